package scsstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/netfault"
	"github.com/jetfleet/jetfleet/sessions/scsstore"
)

var (
	_ scs.Store            = (*scsstore.Store)(nil)
	_ scs.CtxStore         = (*scsstore.Store)(nil)
	_ scs.IterableStore    = (*scsstore.Store)(nil)
	_ scs.IterableCtxStore = (*scsstore.Store)(nil)
)

type fixture struct {
	t     *testing.T
	js    jetstream.JetStream
	store *scsstore.Store
	sm    *scs.SessionManager
}

func setup(t *testing.T, hashTokens bool) *fixture {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	store, err := scsstore.New(js, scsstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sm := scs.New()
	sm.Store = store
	sm.HashTokenInStore = hashTokens
	return &fixture{t: t, js: js, store: store, sm: sm}
}

// request sends one request with token (if any) through scs's
// LoadAndSave and returns the token scs sets (or token unchanged).
func (f *fixture) request(token string, fn func(ctx context.Context)) string {
	h := f.sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fn(r.Context())
		_, _ = io.WriteString(w, "ok")
	}))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if token != "" {
		r.AddCookie(&http.Cookie{Name: f.sm.Cookie.Name, Value: token})
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	for _, c := range w.Result().Cookies() {
		if c.Name == f.sm.Cookie.Name {
			return c.Value
		}
	}
	return token
}

func (f *fixture) keys() []string {
	kv, err := f.js.KeyValue(context.Background(), "scs_sessions")
	if err != nil {
		f.t.Fatal(err)
	}
	keys, err := kv.Keys(context.Background())
	if err != nil && err != jetstream.ErrNoKeysFound {
		f.t.Fatal(err)
	}
	return keys
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestSCSSessionManagerRoundTripsThroughTheBucket(t *testing.T) {
	f := setup(t, false)
	token := f.request("", func(ctx context.Context) { f.sm.Put(ctx, "user", "ada") })
	f.request(token, func(ctx context.Context) {
		if got := f.sm.GetString(ctx, "user"); got != "ada" {
			t.Errorf("user = %q, want ada", got)
		}
	})
	if keys := f.keys(); len(keys) != 1 || keys[0] != sha(token) {
		t.Errorf("bucket keys = %v, want only sha256(token)", keys)
	}
}

func TestSCSRenewTokenAndDestroy(t *testing.T) {
	f := setup(t, false)
	old := f.request("", func(ctx context.Context) { f.sm.Put(ctx, "user", "ada") })
	renewed := f.request(old, func(ctx context.Context) {
		if err := f.sm.RenewToken(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if renewed == old {
		t.Fatal("RenewToken kept the token")
	}
	if _, found, err := f.store.Find(old); found || err != nil {
		t.Errorf("old token after renew: found=%v err=%v", found, err)
	}
	f.request(renewed, func(ctx context.Context) {
		if f.sm.GetString(ctx, "user") != "ada" {
			t.Error("data lost by RenewToken")
		}
		if err := f.sm.Destroy(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if keys := f.keys(); len(keys) != 0 {
		t.Errorf("keys after Destroy = %v", keys)
	}
}

func TestSCSExpiryFollowsTheCommittedDeadline(t *testing.T) {
	f := setup(t, false)
	ctx := context.Background()
	if err := f.store.CommitCtx(ctx, "past", []byte("x"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Commit("future", []byte("y"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, found, err := f.store.Find("past"); found || err != nil {
		t.Errorf("expired session: found=%v err=%v", found, err)
	}
	if b, found, err := f.store.FindCtx(ctx, "future"); !found || err != nil || string(b) != "y" {
		t.Errorf("live session: %q found=%v err=%v", b, found, err)
	}
	if _, found, err := f.store.Find("never"); found || err != nil {
		t.Errorf("unknown token: found=%v err=%v", found, err)
	}
	if err := f.store.Delete("never"); err != nil {
		t.Errorf("Delete of an unknown token = %v, want nil", err)
	}
}

func TestSCSIterateSeesEveryActiveSession(t *testing.T) {
	for _, hashed := range []bool{false, true} {
		f := setup(t, hashed)
		all, err := f.store.All()
		if err != nil || all == nil || len(all) != 0 {
			t.Fatalf("All on an empty bucket = %v, %v; want an empty non-nil map", all, err)
		}
		for _, name := range []string{"ada", "grace", "linus"} {
			f.request("", func(ctx context.Context) { f.sm.Put(ctx, "user", name) })
		}
		if err := f.store.Commit("expired", []byte("x"), time.Now().Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
		var users []string
		err = f.sm.Iterate(context.Background(), func(ctx context.Context) error {
			users = append(users, f.sm.GetString(ctx, "user"))
			return nil
		})
		slices.Sort(users)
		if err != nil || !slices.Equal(users, []string{"ada", "grace", "linus"}) {
			t.Errorf("HashTokenInStore=%v: Iterate saw %v (%v), want the three live sessions", hashed, users, err)
		}
	}
}

func TestSCSWithHashTokenInStoreKeepsNoLiveToken(t *testing.T) {
	f := setup(t, true)
	token := f.request("", func(ctx context.Context) { f.sm.Put(ctx, "user", "ada") })
	f.request(token, func(ctx context.Context) {
		if f.sm.GetString(ctx, "user") != "ada" {
			t.Error("session not found with HashTokenInStore")
		}
	})
	all, err := f.store.All()
	if err != nil || len(all) != 1 {
		t.Fatalf("All = %v, %v", all, err)
	}
	for stored := range all {
		if stored == token {
			t.Error("the store holds the live token although scs hashes it")
		}
	}
}

func TestSCSBucketIsBounded(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	const bound = 16 << 10
	store, err := scsstore.New(js, scsstore.Config{MaxBytes: bound})
	if err != nil {
		t.Fatal(err)
	}
	sm := scs.New()
	sm.Store = store
	f := &fixture{t: t, js: js, store: store, sm: sm}
	first := f.request("", func(ctx context.Context) { f.sm.Put(ctx, "user", "ada") })
	for range 200 {
		f.request("", func(ctx context.Context) { f.sm.Put(ctx, "note", string(make([]byte, 200))) })
	}
	st, err := js.Stream(context.Background(), "KV_scs_sessions")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxBytes != bound || info.State.Bytes > bound {
		t.Fatalf("bucket holds %d bytes with a bound of %d; want at most %d", info.State.Bytes, info.Config.MaxBytes, bound)
	}
	f.request(first, func(ctx context.Context) {
		if got := f.sm.GetString(ctx, "user"); got != "" {
			t.Errorf("the session committed first still has user %q; want it removed and a new session", got)
		}
	})
}

// TestSCSAllIsBoundedByTimeout: scs calls All without a context; when the
// server stops answering (the link cut, a black hole), All fails within
// about Config.Timeout, as Find does, rather than waiting on nats.go's own
// longer timeouts or, mid-listing, for ever.
func TestSCSAllIsBoundedByTimeout(t *testing.T) {
	srv := natstest.Start(t)
	proxy, err := netfault.New(strings.TrimPrefix(srv.ClientURL(), "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	_, js := natstest.Connect(t, "nats://"+proxy.Addr())
	store, err := scsstore.New(js, scsstore.Config{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := store.Commit(fmt.Sprintf("token-%02d", i), []byte("data"), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	all, err := store.All()
	if err != nil || len(all) != 20 {
		t.Fatalf("All with the link up = %d sessions, %v; want 20", len(all), err)
	}
	proxy.Cut()
	began := time.Now()
	all, err = store.All()
	took := time.Since(began)
	if err == nil {
		t.Fatalf("All with the link cut = %d sessions and no error", len(all))
	}
	if took > 3*time.Second {
		t.Fatalf("All with the link cut took %s to fail (%v); Timeout is 300ms", took, err)
	}
	t.Logf("All with the link cut failed after %s: %v", took.Round(time.Millisecond), err)
}
