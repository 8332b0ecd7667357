package sessions

import "context"

// RenewToken gives the session a new token and a new CSRF token, keeping
// its data and its absolute deadline. Call it on login and on every
// privilege change, against session fixation. The old token stops working
// when the response is sent.
func RenewToken(ctx context.Context) error {
	st, err := from(ctx)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.writable(); err != nil {
		return err
	}
	st.token = newToken()
	st.view.csrf, st.csrfChanged = newCSRFToken(), true
	if st.mode == modeKeep {
		st.mode = modeRenewed
	}
	return nil
}

// Destroy deletes the session from the bucket and expires the cookie, as on
// logout. A concurrent request that loaded the session before and saves
// after never brings it back. Values put after Destroy start a fresh
// session with a new token.
func Destroy(ctx context.Context) error {
	st, err := from(ctx)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.writable(); err != nil {
		return err
	}
	st.mode = modeDestroyed
	st.token = ""
	st.base = st.m.emptyRecord()
	st.view = st.base.clone()
	st.changes = map[string]change{}
	st.csrfChanged = false
	return nil
}

// CSRFToken returns the session's CSRF token, creating it on first use. Put
// it in forms as the _token field or send it in the X-CSRF-Token header;
// Manager.CSRF checks it. It returns "" when there is no session or the
// response header is already written before a token existed.
func CSRFToken(ctx context.Context) string {
	st, err := from(ctx)
	if err != nil {
		return ""
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.view.csrf == "" {
		if st.writable() != nil {
			return ""
		}
		st.view.csrf, st.csrfChanged = newCSRFToken(), true
	}
	return st.view.csrf
}

func csrfOf(ctx context.Context) (string, error) {
	st, err := from(ctx)
	if err != nil {
		return "", err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.view.csrf, nil
}
