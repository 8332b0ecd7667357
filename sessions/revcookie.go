package sessions

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// seen is what the client has seen of its session, carried in the
// revision cookie (Cookie.Name + "_rev"): the session's revision in the
// bucket and its idle deadline at that revision. It is a hint, not a
// credential: it only decides which copy of the session may answer, never
// whose session it is. A client that alters it only makes its own requests
// slower (they ask the stream leader) or fail (503 until StoreTimeout),
// at the cost of about 20 API requests each (security.md says so).
type seen struct {
	rev      uint64
	deadline time.Time
}

// newerThan reports whether the client has seen more than s shows: a
// later revision, or a live session where s has no trace of it at all
// (no value and no delete marker) though its idle deadline has not come.
func (k seen) newerThan(s stored, now time.Time) bool {
	if k.rev == 0 {
		return false
	}
	if s.rev == 0 { // nothing at all under the key
		return now.Before(k.deadline.Add(-time.Second))
	}
	return s.rev < k.rev
}

// revCookieName is the revision cookie of a session cookie named name.
func revCookieName(name string) string { return name + "_rev" }

// bindLen is how many hex characters of the storage key the revision
// cookie repeats, so that a revision is only ever applied to the session
// it was issued for (a client that kept an old revision cookie with a new
// session cookie sends a revision of another key).
const bindLen = 8

// formatSeen is the revision cookie's value: rev.deadline.key-prefix, the
// numbers in base 36 (deadline in unix seconds).
func formatSeen(key string, rev uint64, deadline time.Time) string {
	var b strings.Builder
	b.WriteString(strconv.FormatUint(rev, 36))
	b.WriteByte('.')
	b.WriteString(strconv.FormatInt(deadline.Unix(), 36))
	b.WriteByte('.')
	b.WriteString(key[:bindLen])
	return b.String()
}

// parseSeen reads the revision cookie for key; the zero seen when it is
// absent, malformed or issued for another key.
func parseSeen(r *http.Request, name, key string) seen {
	c, err := r.Cookie(revCookieName(name))
	if err != nil {
		return seen{}
	}
	revText, rest, ok1 := strings.Cut(c.Value, ".")
	dlText, bind, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || bind != key[:bindLen] {
		return seen{}
	}
	rev, err1 := strconv.ParseUint(revText, 36, 64)
	dl, err2 := strconv.ParseInt(dlText, 36, 64)
	if err1 != nil || err2 != nil {
		return seen{}
	}
	return seen{rev: rev, deadline: time.Unix(dl, 0)}
}
