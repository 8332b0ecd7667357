package sessions_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/sessions"
)

// A login form protected by CSRF, a flash message, and logout, against an
// embedded NATS server.
func Example() {
	dir, _ := os.MkdirTemp("", "sessions-example")
	defer os.RemoveAll(dir)
	srv, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:-1", StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)

	sm, err := sessions.New(js, sessions.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, sessions.CSRFToken(r.Context())) // a real page renders a form with _token
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		_ = sessions.RenewToken(ctx) // new token on login: no session fixation
		_ = sessions.Put(ctx, "user_id", 42)
		_ = sessions.Flash(ctx, "status", "Welcome back")
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		id, ok := sessions.GetInt(r.Context(), "user_id")
		fmt.Fprintf(w, "logged in=%v user=%d flash=%q", ok, id, sessions.PopString(r.Context(), "status"))
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		_ = sessions.Destroy(r.Context())
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	web := httptest.NewServer(sm.Middleware(sm.CSRF(mux)))
	defer web.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	token := body(browser.Get(web.URL + "/login"))
	fmt.Println(body(browser.PostForm(web.URL+"/login", url.Values{"_token": {"forged"}})))
	fmt.Println(body(browser.PostForm(web.URL+"/login", url.Values{"_token": {token}})))
	fmt.Println(body(browser.Get(web.URL + "/")))
	req, _ := http.NewRequest(http.MethodPost, web.URL+"/logout", nil)
	req.Header.Set(sessions.CSRFHeader, "stale") // not this session's token
	fmt.Println(body(browser.Do(req)))
	token = body(browser.Get(web.URL + "/login")) // RenewToken rotated it at login
	req, _ = http.NewRequest(http.MethodPost, web.URL+"/logout", nil)
	req.Header.Set(sessions.CSRFHeader, token)
	fmt.Println(body(browser.Do(req)))
	// Output:
	// 419 Page Expired: the CSRF token does not match this session; reload the page and try again
	// logged in=true user=42 flash="Welcome back"
	// logged in=true user=42 flash=""
	// 419 Page Expired: the CSRF token does not match this session; reload the page and try again
	// logged in=false user=0 flash=""
}

func body(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// Reading the settings from the environment, Laravel style.
func ExampleConfigFromEnv() {
	env := map[string]string{"SESSION_LIFETIME": "30", "SESSION_SECURE_COOKIE": "true", "SESSION_SAME_SITE": "strict"}
	cfg, err := sessions.ConfigFromEnv(func(k string) string { return env[k] })
	fmt.Println(cfg.IdleTimeout, cfg.Cookie.Secure, cfg.Cookie.SameSite == http.SameSiteStrictMode, err)

	_, err = sessions.ConfigFromEnv(func(k string) string { return map[string]string{"SESSION_DRIVER": "redis"}[k] })
	fmt.Println(err)
	// Output:
	// 30m0s true true <nil>
	// sessions: bad configuration: SESSION_DRIVER="redis": only "nats" is supported (sessions live in a NATS KV bucket)
}
