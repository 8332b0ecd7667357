package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
)

// User is a catalog user: a name, nothing more (the demo has no passwords).
type User struct {
	ID   int64  `db:"id" json:"id"`
	Name string `db:"name" json:"name"`
}

// OutboxMessage is a message a job wrote for a user (the welcome email).
type OutboxMessage struct {
	Kind      string    `db:"kind" json:"kind"`
	Body      string    `db:"body" json:"body"`
	CreatedAt time.Time `db:"created_at" json:"created_at"`
}

// login is POST /login {"name": "..."}: it finds or creates the user, and
// on first login dispatches the welcome email. The session token is renewed,
// against session fixation.
func (c *Catalog) login(w http.ResponseWriter, r *http.Request) error {
	in, err := readInput(r)
	if err != nil {
		return err
	}
	name, err := in.text("name", true, 64)
	if err != nil {
		return err
	}
	ctx := r.Context()
	u, created, err := c.findOrCreateUser(ctx, name)
	if err != nil {
		return err
	}
	var jobID string
	if created {
		// The job ID makes a repeated dispatch (a retried request) a no-op.
		jobID, err = c.jobs.Dispatch(ctx, SendWelcomeEmail{UserID: u.ID},
			bus.OnQueue(EmailsQueue), bus.JobID(fmt.Sprintf("welcome-%d", u.ID)))
		if err != nil { // the user exists now: log in anyway, say it in the log
			c.log.Error().Ctx(ctx).Err(err).Int64("user_id", u.ID).Msg("welcome email not queued")
		}
	}
	if err := sessions.RenewToken(ctx); err != nil {
		return err
	}
	if err := putAll(ctx, keyUserID, u.ID, keyUserName, u.Name); err != nil {
		return err
	}
	if wantsHTML(r) {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"user": u, "created": created, "welcome_job": jobID, "csrf_token": sessions.CSRFToken(ctx),
	})
	return nil
}

// findOrCreateUser returns the user called name, creating it when missing.
// Two first logins racing for one name both end up with the same user.
func (c *Catalog) findOrCreateUser(ctx context.Context, name string) (User, bool, error) {
	u := User{Name: name}
	err := c.db.Get(ctx, &u, "SELECT id, name FROM users WHERE name = ?", name)
	if err == nil {
		return u, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return u, false, err
	}
	res, err := c.db.Exec(ctx, "INSERT INTO users (name) VALUES (?)", name)
	if err != nil {
		// Most likely a concurrent login created it: read the primary.
		if err2 := c.db.Get(readmodel.UsePrimary(ctx), &u, "SELECT id, name FROM users WHERE name = ?", name); err2 == nil {
			return u, false, nil
		}
		return u, false, err
	}
	u.ID, err = res.LastInsertId()
	return u, true, err
}

// logout is POST /logout: it deletes the session.
func (c *Catalog) logout(w http.ResponseWriter, r *http.Request) error {
	if err := sessions.Destroy(r.Context()); err != nil {
		return err
	}
	if wantsHTML(r) {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"logged_out": true})
	return nil
}

// me is GET /me: the logged-in user, the CSRF token to send in
// X-CSRF-Token, and the messages jobs wrote for them.
func (c *Catalog) me(w http.ResponseWriter, r *http.Request) error {
	u, err := currentUser(r)
	if err != nil {
		return err
	}
	outbox, err := c.outbox(r.Context(), u.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": u, "csrf_token": sessions.CSRFToken(r.Context()), "outbox": outbox})
	return nil
}

// outbox returns the messages written for the user called name.
func (c *Catalog) outbox(ctx context.Context, name string) ([]OutboxMessage, error) {
	msgs := []OutboxMessage{}
	err := c.db.Select(ctx, &msgs, "SELECT kind, body, created_at FROM outbox WHERE recipient = ? ORDER BY id", name)
	return msgs, err
}

// currentUser is the session's user, or a 401 saying how to log in.
func currentUser(r *http.Request) (User, error) {
	id, ok := sessions.GetInt64(r.Context(), keyUserID)
	name, _ := sessions.GetString(r.Context(), keyUserName)
	if !ok {
		return User{}, fail(http.StatusUnauthorized, "not logged in: POST /login with {\"name\": \"...\"} first")
	}
	return User{ID: id, Name: name}, nil
}

// putAll puts key, value pairs in the session.
func putAll(ctx context.Context, kv ...any) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if err := sessions.Put(ctx, kv[i].(string), kv[i+1]); err != nil {
			return err
		}
	}
	return nil
}
