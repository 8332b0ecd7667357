package sessions_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/sessions"
)

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestConfigFromEnvReadsLaravelNames(t *testing.T) {
	t.Parallel()
	cfg, err := sessions.ConfigFromEnv(envOf(map[string]string{
		"SESSION_DRIVER": "nats", "SESSION_LIFETIME": "30", "SESSION_ABSOLUTE_LIFETIME": "8h",
		"SESSION_EXPIRE_ON_CLOSE": "true", "SESSION_COOKIE": "app_session", "SESSION_SECURE_COOKIE": "1",
		"SESSION_SAME_SITE": "Strict", "SESSION_DOMAIN": ".example.com", "SESSION_PATH": "/app",
		"SESSION_PARTITIONED_COOKIE": "yes", "SESSION_BUCKET": "web_sessions", "SESSION_REPLICAS": "3",
	}))
	must(t, err)
	want := sessions.Config{Bucket: "web_sessions", Replicas: 3, IdleTimeout: 30 * time.Minute,
		AbsoluteTimeout: 8 * time.Hour, ExpireOnClose: true, Cookie: sessions.CookieConfig{
			Name: "app_session", Domain: ".example.com", Path: "/app", Secure: true,
			SameSite: http.SameSiteStrictMode, Partitioned: true}}
	if cfg.Bucket != want.Bucket || cfg.Replicas != want.Replicas || cfg.IdleTimeout != want.IdleTimeout ||
		cfg.AbsoluteTimeout != want.AbsoluteTimeout || cfg.ExpireOnClose != want.ExpireOnClose || cfg.Cookie != want.Cookie {
		t.Errorf("ConfigFromEnv = %+v\nwant %+v", cfg, want)
	}
}

func TestConfigFromEnvUnsetLeavesZeroValuesForTheDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := sessions.ConfigFromEnv(envOf(map[string]string{"SESSION_DOMAIN": "null"}))
	must(t, err)
	if cfg.IdleTimeout != 0 || cfg.Cookie != (sessions.CookieConfig{}) || cfg.Bucket != "" {
		t.Errorf("ConfigFromEnv with nothing set = %+v, want the zero Config", cfg)
	}
}

func TestConfigFromEnvRejectsBadValuesNamingTheVariable(t *testing.T) {
	t.Parallel()
	for vars, want := range map[[2]string]string{
		{"SESSION_DRIVER", "redis"}:                  `SESSION_DRIVER="redis": only "nats" is supported`,
		{"SESSION_DRIVER", "cookie"}:                 `SESSION_DRIVER="cookie"`,
		{"SESSION_LIFETIME", "soon"}:                 `SESSION_LIFETIME="soon": want a positive number of minutes`,
		{"SESSION_LIFETIME", "-5"}:                   `SESSION_LIFETIME="-5"`,
		{"SESSION_LIFETIME", "99999999999"}:          `SESSION_LIFETIME="99999999999"`,
		{"SESSION_ABSOLUTE_LIFETIME", "1 day"}:       `SESSION_ABSOLUTE_LIFETIME="1 day"`,
		{"SESSION_ABSOLUTE_LIFETIME", "150000000"}:   `SESSION_ABSOLUTE_LIFETIME="150000000": want a positive number of minutes (120) or a duration (2h), at most 100 years`,
		{"SESSION_LIFETIME", "900000h"}:              `SESSION_LIFETIME="900000h"`,
		{"SESSION_SECURE_COOKIE", "maybe"}:           `SESSION_SECURE_COOKIE="maybe": want true or false`,
		{"SESSION_SAME_SITE", "sometimes"}:           `SESSION_SAME_SITE="sometimes": want lax, strict or none`,
		{"SESSION_REPLICAS", "three"}:                `SESSION_REPLICAS="three": want an integer`,
		{"SESSION_REPLICAS", "0"}:                    `SESSION_REPLICAS="0": want 1 to 5`,
		{"SESSION_REPLICAS", "9"}:                    `SESSION_REPLICAS="9": want 1 to 5`,
		{"SESSION_MAX_BYTES", "0"}:                   `SESSION_MAX_BYTES="0": want at least 4096 bytes, or -1`,
		{"SESSION_MAX_BYTES", "-7"}:                  `SESSION_MAX_BYTES="-7"`,
		{"SESSION_SAME_SITE", "none"}:                `SESSION_SAME_SITE="none": want SESSION_SECURE_COOKIE=true with it`,
		{"SESSION_PARTITIONED_COOKIE", "true"}:       `SESSION_PARTITIONED_COOKIE="true": want SESSION_SECURE_COOKIE=true with it`,
		{"SESSION_TRUSTED_PROXIES", "10.0.0.0/8,lb"}: `SESSION_TRUSTED_PROXIES="lb": want CIDR prefixes or IP addresses`,
	} {
		_, err := sessions.ConfigFromEnv(envOf(map[string]string{vars[0]: vars[1]}))
		if !errors.Is(err, sessions.ErrConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=%s: error %v, want ErrConfig containing %q", vars[0], vars[1], err, want)
		}
	}
}

func TestNewRejectsBadConfigNamingTheField(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	for want, cfg := range map[string]sessions.Config{
		`Bucket "a.b"`:                      {Bucket: "a.b"},
		"Replicas 7":                        {Replicas: 7},
		"IdleTimeout 10ms: must be from 1s": {IdleTimeout: 10 * time.Millisecond},
		"AbsoluteTimeout 2500000h0m0s: must be from 1s to 100 years": {AbsoluteTimeout: 2_500_000 * time.Hour},
		"RefreshFraction 0.9":                           {RefreshFraction: 0.9},
		"Cookie.SameSite=None: browsers require Secure": {Cookie: sessions.CookieConfig{SameSite: http.SameSiteNoneMode}},
		"Cookie.Partitioned: browsers require Secure":   {Cookie: sessions.CookieConfig{Partitioned: true}},
		`Cookie (name "bad name"`:                       {Cookie: sessions.CookieConfig{Name: "bad name"}},
		"CSRFFailureStatus 200":                         {CSRFFailureStatus: 200},
	} {
		_, err := sessions.New(js, cfg)
		if !errors.Is(err, sessions.ErrConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("New(%+v) = %v, want ErrConfig containing %q", cfg, err, want)
		}
	}
	if _, err := sessions.New(nil, sessions.Config{}); !errors.Is(err, sessions.ErrConfig) {
		t.Errorf("New(nil) = %v", err)
	}
}

func TestNewBringsAnExistingBucketInLine(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "KV_sessions", Subjects: []string{"$KV.sessions.>"},
		MaxMsgsPerSubject: 1, MaxAge: time.Hour}) // direct gets off, as older versions made it
	must(t, err)
	_, err = sessions.New(js, sessions.Config{IdleTimeout: 20 * time.Minute})
	must(t, err)
	st, err := js.Stream(t.Context(), "KV_sessions")
	must(t, err)
	if c := st.CachedInfo().Config; !c.AllowDirect || c.MaxAge != 20*time.Minute || c.MaxBytes != 256<<20 || c.Discard != jetstream.DiscardOld {
		t.Errorf("bucket after New: AllowDirect=%v MaxAge=%s MaxBytes=%d Discard=%s, want true, 20m, 256 MiB (the default bound) and old",
			c.AllowDirect, c.MaxAge, c.MaxBytes, c.Discard)
	}
	// Negative MaxBytes lifts the bound again.
	_, err = sessions.New(js, sessions.Config{IdleTimeout: 20 * time.Minute, MaxBytes: -1})
	must(t, err)
	st, err = js.Stream(t.Context(), "KV_sessions")
	must(t, err)
	if c := st.CachedInfo().Config; c.MaxBytes != -1 || c.Discard != jetstream.DiscardNew {
		t.Errorf("bucket after New with MaxBytes -1: MaxBytes=%d Discard=%s, want -1 and new", c.MaxBytes, c.Discard)
	}
	// A bucket as earlier versions of this package made it (no bound,
	// discard new) gets the bound.
	_, err = sessions.New(js, sessions.Config{IdleTimeout: 20 * time.Minute, MaxBytes: 64 << 20})
	must(t, err)
	st, err = js.Stream(t.Context(), "KV_sessions")
	must(t, err)
	if c := st.CachedInfo().Config; c.MaxBytes != 64<<20 || c.Discard != jetstream.DiscardOld {
		t.Errorf("unbounded bucket after New with MaxBytes 64 MiB: MaxBytes=%d Discard=%s, want 64 MiB and old", c.MaxBytes, c.Discard)
	}
}
