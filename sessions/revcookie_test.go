package sessions_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/sessions"
)

// A revision cookie is a hint about which copy may answer, never trusted
// for more: one that claims a revision the bucket never had makes that
// client's request fail closed (the leader never catches up with it)
// rather than read an older session; one issued for another session is
// ignored; without one the session is read as before.
func TestRevisionCookieIsOnlyAHint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{StoreTimeout: 300 * time.Millisecond})
	c := login(t, e)
	issued := c.rev
	parts := strings.Split(issued, ".")
	if len(parts) != 3 {
		t.Fatalf("revision cookie %q: want rev.deadline.key", issued)
	}
	rev, err := strconv.ParseUint(parts[0], 36, 64)
	must(t, err)

	c.rev = strconv.FormatUint(rev+1000, 36) + "." + parts[1] + "." + parts[2]
	ran := false
	if w := c.run(e.sm, func(context.Context) { ran = true }); w.Code != http.StatusServiceUnavailable || ran {
		t.Errorf("revision ahead of the bucket: %d (handler ran: %v), want 503 without running", w.Code, ran)
	}

	c.rev = strconv.FormatUint(rev+1000, 36) + "." + parts[1] + ".00000000"
	c.run(e.sm, func(ctx context.Context) {
		if _, ok := sessions.GetInt(ctx, "user_id"); !ok {
			t.Error("a revision cookie of another session was not ignored: the session was not loaded")
		}
	})

	c.rev = ""
	c.run(e.sm, func(ctx context.Context) {
		if _, ok := sessions.GetInt(ctx, "user_id"); !ok {
			t.Error("without a revision cookie the session was not loaded")
		}
	})
	if c.rev != issued {
		t.Errorf("revision cookie after a read without one = %q, want it set again to %q", c.rev, issued)
	}
}
