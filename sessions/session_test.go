package sessions_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/sessions"
)

type cart struct {
	Items   []string
	Total   float64
	Updated time.Time
	Counts  map[string]int
}

func everyValueType() map[string]any {
	return map[string]any{
		"string":          "héllo\x00wörld",
		"empty":           "",
		"bool-t":          true,
		"bool-f":          false,
		"int":             math.MinInt,
		"int8":            int8(math.MinInt8),
		"int16":           int16(math.MaxInt16),
		"int32":           int32(math.MinInt32),
		"int64":           int64(math.MaxInt64),
		"uint":            uint(math.MaxUint),
		"uint8":           uint8(255),
		"uint16":          uint16(65535),
		"uint32":          uint32(math.MaxUint32),
		"uint64":          uint64(math.MaxUint64),
		"uintptr":         uintptr(0xdeadbeef),
		"float32":         float32(math.Copysign(0, -1)),
		"float32-tiny":    float32(math.SmallestNonzeroFloat32),
		"float64":         math.Pi,
		"float64-inf":     math.Inf(-1),
		"float64-nan":     math.NaN(),
		"float64-negzero": math.Copysign(0, -1),
		"complex64":       complex64(complex(1.5, -2.25)),
		"complex128":      complex(math.MaxFloat64, math.SmallestNonzeroFloat64),
		"bytes":           []byte{0, 1, 254, 255},
		"bytes-empty":     []byte{},
		"bytes-nil":       []byte(nil),
		"time":            time.Date(2031, 7, 8, 9, 10, 11, 123456789, time.FixedZone("IST", 5*3600+1800)),
		"time-lmt":        time.Date(1900, 1, 1, 0, 0, 0, 0, time.FixedZone("LMT", -(44*60+30))),
		"time-utc":        time.Date(1999, 12, 31, 23, 59, 59, 1, time.UTC),
		"duration":        90*time.Minute + 1,
		"cart": cart{Items: []string{"a", "b"}, Total: 0.1 + 0.2,
			Updated: time.Date(2030, 1, 1, 0, 0, 0, 5, time.UTC), Counts: map[string]int{"a": 2}},
	}
}

func TestRoundTripOfEveryValueType(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	must(t, sessions.Register[cart](e.sm, "cart"))
	values := everyValueType()
	c := newClient()
	c.run(e.sm, func(ctx context.Context) {
		for k, v := range values {
			must(t, sessions.Put(ctx, k, v))
		}
	})
	other := e.node() // read through a different node
	must(t, sessions.Register[cart](other, "cart"))
	c.run(other, func(ctx context.Context) {
		for k, want := range values {
			got, ok := sessions.Get(ctx, k)
			if !ok || !sessions.SameValue(got, want) {
				t.Errorf("%s: got %#v (%T, ok=%v), want %#v (%T)", k, got, got, ok, want, want)
			}
		}
		if got, want := sessions.Keys(ctx), slices.Sorted(mapsKeys(values)); !slices.Equal(got, want) {
			t.Errorf("Keys = %v, want %v", got, want)
		}
		if n, ok := sessions.GetInt(ctx, "int"); !ok || n != math.MinInt {
			t.Errorf("GetInt = %d, %v", n, ok)
		}
		if _, ok := sessions.GetInt(ctx, "int64"); ok {
			t.Error("GetInt accepted an int64: types must round-trip exactly, not convert")
		}
		if s, ok := sessions.GetString(ctx, "string"); !ok || s != values["string"] {
			t.Errorf("GetString = %q, %v", s, ok)
		}
		if v, ok := sessions.GetAs[cart](ctx, "cart"); !ok || v.Total != 0.1+0.2 {
			t.Errorf("GetAs[cart] = %+v, %v", v, ok)
		}
	})
}

func mapsKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestPutRejectsWhatItCannotStoreExactly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	type role string
	newClient().run(e.sm, func(ctx context.Context) {
		for _, v := range []any{nil, role("admin"), struct{ A int }{1}, []string{"x"}, &cart{}} {
			if err := sessions.Put(ctx, "k", v); !errors.Is(err, sessions.ErrUnsupportedType) {
				t.Errorf("Put(%T) = %v, want ErrUnsupportedType", v, err)
			}
		}
	})
	if err := sessions.Register[string](e.sm, "string"); !errors.Is(err, sessions.ErrUnsupportedType) {
		t.Errorf("registering a native type: %v", err)
	}
	if err := sessions.Put(context.Background(), "k", 1); !errors.Is(err, sessions.ErrNoSession) {
		t.Errorf("Put without middleware = %v, want ErrNoSession", err)
	}
}

func TestFlashIsReadableOnTheNextRequestOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	c := newClient()
	c.run(e.sm, func(ctx context.Context) {
		must(t, sessions.Flash(ctx, "status", "Saved"))
		must(t, sessions.Flash(ctx, "unread", "never popped"))
	})
	c.run(e.sm, func(ctx context.Context) {
		if got := sessions.PopString(ctx, "status"); got != "Saved" {
			t.Errorf("Pop on the next request = %q, want Saved", got)
		}
		if got := sessions.PopString(ctx, "status"); got != "" {
			t.Errorf("second Pop in the same request = %q, want empty", got)
		}
		if got, _ := sessions.GetString(ctx, "unread"); got != "never popped" {
			t.Errorf("unread flash on the next request = %q", got)
		}
	})
	c.run(e.sm, func(ctx context.Context) {
		if sessions.Pop(ctx, "status") != nil || sessions.Has(ctx, "unread") {
			t.Errorf("flash values survived a second request: %v", sessions.Keys(ctx))
		}
	})
}

func TestRenewTokenChangesTokenAndOldOneNoLongerLoads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	c := newClient()
	var csrfBefore, csrfAfter string
	c.run(e.sm, func(ctx context.Context) {
		must(t, sessions.Put(ctx, "cart", "3 items"))
		csrfBefore = sessions.CSRFToken(ctx)
	})
	old := c.token
	c.run(e.sm, func(ctx context.Context) {
		must(t, sessions.RenewToken(ctx))
		csrfAfter = sessions.CSRFToken(ctx)
	})
	if c.token == "" || c.token == old {
		t.Fatalf("token after RenewToken = %q, old %q: want a new one", c.token, old)
	}
	if csrfAfter == csrfBefore || csrfAfter == "" {
		t.Errorf("CSRF token not rotated by RenewToken")
	}
	c.run(e.sm, func(ctx context.Context) {
		if v, _ := sessions.GetString(ctx, "cart"); v != "3 items" {
			t.Errorf("data after renew = %q, want it kept", v)
		}
	})
	stale := &client{name: c.name, token: old}
	stale.run(e.sm, func(ctx context.Context) {
		if sessions.Has(ctx, "cart") {
			t.Error("the old token still loads the session")
		}
	})
	if got := e.keys(); len(got) != 1 || got[0] != hashOf(c.token) {
		t.Errorf("bucket keys = %v, want only the new token's hash", got)
	}
}

func TestDestroyRemovesTheKeyAndExpiresTheCookie(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	c := newClient()
	c.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "user_id", 7)) })
	token := c.token
	w := c.run(e.sm, func(ctx context.Context) { must(t, sessions.Destroy(ctx)) })
	if got := w.Header().Get("Set-Cookie"); !strings.Contains(got, "Max-Age=0") {
		t.Errorf("Set-Cookie after Destroy = %q, want an expired cookie", got)
	}
	if keys := e.keys(); len(keys) != 0 {
		t.Errorf("bucket keys after Destroy = %v, want none", keys)
	}
	replay := &client{name: c.name, token: token}
	replay.run(e.sm, func(ctx context.Context) {
		if sessions.Has(ctx, "user_id") {
			t.Error("a destroyed session's token still loads it")
		}
	})
}

func TestDestroyThenPutStartsAFreshSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	c := newClient()
	c.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "user_id", 7)) })
	old := c.token
	c.run(e.sm, func(ctx context.Context) {
		must(t, sessions.Destroy(ctx))
		must(t, sessions.Flash(ctx, "status", "Logged out"))
	})
	if c.token == "" || c.token == old {
		t.Fatalf("token after Destroy+Flash = %q, want a new one", c.token)
	}
	c.run(e.sm, func(ctx context.Context) {
		if sessions.Has(ctx, "user_id") || sessions.PopString(ctx, "status") != "Logged out" {
			t.Errorf("fresh session keys = %v", sessions.Keys(ctx))
		}
	})
}

func hashOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func TestBucketHoldsHashesNotTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	c := newClient()
	c.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "k", "v")) })
	if len(c.token) != 43 {
		t.Fatalf("token %q: want 43 base64url characters (256 bits)", c.token)
	}
	keys := e.keys()
	if len(keys) != 1 || keys[0] != hashOf(c.token) || strings.Contains(keys[0], c.token) {
		t.Errorf("bucket keys = %v, want [sha256(token)] = [%s]", keys, hashOf(c.token))
	}
}

func TestUntrustedCookiesGetAFreshSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	victim := newClient()
	victim.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "user_id", 1)) })
	cases := map[string]string{
		"never issued":  "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"forged":        victim.token[:42] + flip(victim.token[42]),
		"hash as token": hashOf(victim.token),
		"too short":     victim.token[:20],
		"too long":      victim.token + "A",
		"not base64":    strings.Repeat("!", 43),
		"padded":        victim.token[:40] + "===",
		"empty":         "",
	}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			c := &client{name: "jetfleet_session", token: value}
			c.run(e.sm, func(ctx context.Context) {
				if len(sessions.Keys(ctx)) != 0 {
					t.Errorf("cookie %q loaded data: %v", value, sessions.Keys(ctx))
				}
				must(t, sessions.Put(ctx, "mine", true))
			})
			if c.token == value || len(c.token) != 43 {
				t.Errorf("token after a %s cookie = %q: the client's value was adopted or none issued", name, c.token)
			}
		})
	}
}

func flip(b byte) string {
	if b == 'A' {
		return "Q"
	}
	return "A"
}

func TestNoSessionWorkMeansNoCookieAndNoWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	before := e.lastSeq()
	c := newClient()
	w := c.run(e.sm, func(ctx context.Context) { _, _ = sessions.GetString(ctx, "x") })
	if got := w.Header().Values("Set-Cookie"); len(got) != 0 {
		t.Errorf("Set-Cookie = %v for a request that stored nothing", got)
	}
	if after := e.lastSeq(); after != before {
		t.Errorf("bucket written %d times", after-before)
	}
}

// Putting the value a session already holds is no change: nothing is
// written, no cookie is set.
func TestPuttingTheSameValueWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	c := login(t, e)
	c.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "theme", "dark")) })
	before := e.lastSeq()
	w := c.run(e.sm, func(ctx context.Context) {
		must(t, sessions.Put(ctx, "theme", "dark"))
		must(t, sessions.Remove(ctx, "user_id"))
		must(t, sessions.Put(ctx, "user_id", 1)) // as login stored it
	})
	if after := e.lastSeq(); after != before {
		t.Errorf("bucket written %d times by puts of the values it holds", after-before)
	}
	if got := w.Header().Values("Set-Cookie"); len(got) != 0 {
		t.Errorf("Set-Cookie = %v for a request that changed nothing", got)
	}
	c.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "theme", "light")) })
	if after := e.lastSeq(); after != before+1 {
		t.Errorf("a changed value: %d writes, want 1", after-before)
	}
}

func TestChangesAfterTheResponseIsWrittenAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	c := newClient()
	h := e.sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		must(t, sessions.Put(ctx, "before", 1))
		_, _ = w.Write([]byte("body"))
		if err := sessions.Put(ctx, "after", 2); !errors.Is(err, sessions.ErrCommitted) {
			t.Errorf("Put after Write = %v, want ErrCommitted", err)
		}
	}))
	c.do(h, c.request("GET", "/", nil))
	c.run(e.sm, func(ctx context.Context) {
		if !sessions.Has(ctx, "before") || sessions.Has(ctx, "after") {
			t.Errorf("keys = %v, want [before]", sessions.Keys(ctx))
		}
	})
}

func TestValuesOfTypesUnknownToANodeSurviveItsSaves(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	must(t, sessions.Register[cart](e.sm, "cart"))
	oldNode := e.node() // an older deploy: cart not registered
	c := newClient()
	want := cart{Items: []string{"x"}, Total: 2}
	c.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "cart", want)) })
	c.run(oldNode, func(ctx context.Context) {
		if _, ok := sessions.Get(ctx, "cart"); ok {
			t.Error("a node without the type decoded it")
		}
		must(t, sessions.Put(ctx, "visits", 1))
	})
	c.run(e.sm, func(ctx context.Context) {
		if got, ok := sessions.GetAs[cart](ctx, "cart"); !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("cart after a save by a node that does not know it = %+v, %v", got, ok)
		}
	})
}

func TestFlushSavesTheSessionBeforeTheFirstBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	c := newClient()
	h := e.sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		must(t, sessions.Put(r.Context(), "streamed", true))
		must(t, http.NewResponseController(w).Flush())
		_, _ = w.Write([]byte("chunk"))
	}))
	w := c.do(h, c.request(http.MethodGet, "/", nil))
	if !w.Flushed || c.token == "" || w.Body.String() != "chunk" {
		t.Fatalf("flushed=%v token=%q body=%q", w.Flushed, c.token, w.Body)
	}
	c.run(e.sm, func(ctx context.Context) {
		if !sessions.Has(ctx, "streamed") {
			t.Error("session put before Flush was not saved")
		}
	})
}
