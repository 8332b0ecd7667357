// Command sessions measures jetfleet's session middleware beside scs with
// its Redis store, in one interleaved loop on this machine: NATS runs as its
// own process (`jetfleet nats`, built from ../cmd/jetfleet) as Redis does.
//
//	cd bench && go run ./sessions -n 5000
//
// A "read" is a request through the middleware whose handler reads one
// value; a "write" is one whose handler puts one value. Each round runs one
// of each kind on both systems, the order alternating, so both see the same
// machine load. It prints one line per system and the ratios.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"sort"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench sessions:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("sessions", flag.ContinueOnError)
	n := fs.Int("n", 5000, "rounds; each round makes one read and one write request on each system")
	warm := fs.Int("warmup", 500, "rounds run before timing")
	redisAddr := fs.String("redis", "127.0.0.1:6379", "Redis address; a private redis-server is started when it does not answer")
	natsURL := fs.String("nats", "", "NATS URL of a running server; empty builds and starts \"jetfleet nats\"")
	localCopy := fs.Int("localcopy", 0, "jetfleet's sessions.Config.LocalCopy (0: its default; -1: off, every load makes a direct get)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the timed rounds to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	url := *natsURL
	if url == "" {
		u, stop, err := startNATS(ctx)
		if err != nil {
			return err
		}
		stops = append(stops, stop)
		url = u
	}
	addr, stop, err := ensureRedis(ctx, *redisAddr)
	if err != nil {
		return err
	}
	stops = append(stops, stop)

	jf, err := newJetfleet(ctx, url, *localCopy)
	if err != nil {
		return err
	}
	stops = append(stops, jf.close)
	sc, err := newSCS(addr)
	if err != nil {
		return err
	}
	stops = append(stops, sc.close)

	systems := []*system{jf.system, sc.system}
	for _, s := range systems {
		if err := s.login(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	for i := range *warm {
		if err := round(systems, i, nil); err != nil {
			return err
		}
	}
	res := map[string]*timings{}
	for _, s := range systems {
		res[s.name] = &timings{}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	for i := range *n {
		if err := round(systems, i, res); err != nil {
			return err
		}
	}
	pprof.StopCPUProfile()
	report(out, *n, res[jf.name], res[sc.name], jf.name, sc.name)
	return floors(ctx, out, url, addr, *n)
}

// system is one session implementation behind an HTTP handler.
type system struct {
	name   string
	read   http.Handler // reads "user_id"
	write  http.Handler // puts "visits"
	cookie []*http.Cookie
	login  func() error
}

type timings struct{ read, write []time.Duration }

// round makes one read and one write request on every system, the order of
// the systems alternating from round to round.
func round(systems []*system, i int, res map[string]*timings) error {
	order := systems
	if i%2 == 1 {
		order = []*system{systems[1], systems[0]}
	}
	for _, kind := range []string{"read", "write"} {
		for _, s := range order {
			h := s.read
			if kind == "write" {
				h = s.write
			}
			d, err := s.do(h)
			if err != nil {
				return fmt.Errorf("%s %s: %w", s.name, kind, err)
			}
			if res == nil {
				continue
			}
			t := res[s.name]
			if kind == "read" {
				t.read = append(t.read, d)
			} else {
				t.write = append(t.write, d)
			}
		}
	}
	return nil
}

// do sends one request with the system's cookies through h and keeps any
// cookie the response sets.
func (s *system) do(h http.Handler) (time.Duration, error) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for _, c := range s.cookie {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	t0 := time.Now()
	h.ServeHTTP(w, r)
	d := time.Since(t0)
	if w.Code != http.StatusOK {
		return 0, fmt.Errorf("status %d: %s", w.Code, w.Body)
	}
	s.keep(w.Result().Cookies())
	return d, nil
}

func (s *system) keep(set []*http.Cookie) {
	for _, c := range set {
		kept := false
		for i, have := range s.cookie {
			if have.Name == c.Name {
				s.cookie[i], kept = c, true
			}
		}
		if !kept {
			s.cookie = append(s.cookie, c)
		}
	}
}

func report(out io.Writer, n int, jf, sc *timings, jfName, scName string) {
	fmt.Fprintf(out, "sessions: %d rounds, interleaved; µs per request (mean, p50, p99)\n", n)
	line := func(name string, t *timings) {
		fmt.Fprintf(out, "%-10s read %7.1f %7.1f %7.1f   write %7.1f %7.1f %7.1f\n", name,
			mean(t.read), pct(t.read, 50), pct(t.read, 99), mean(t.write), pct(t.write, 50), pct(t.write, 99))
	}
	line(jfName, jf)
	line(scName, sc)
	fmt.Fprintf(out, "ratio %s/%s: read %.2f (target <= 0.8), write %.2f (target <= 1.0); by p50: read %.2f, write %.2f\n",
		jfName, scName, mean(jf.read)/mean(sc.read), mean(jf.write)/mean(sc.write),
		pct(jf.read, 50)/pct(sc.read, 50), pct(jf.write, 50)/pct(sc.write, 50))
}

func mean(ds []time.Duration) float64 {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return float64(sum.Nanoseconds()) / 1000 / float64(len(ds))
}

func pct(ds []time.Duration, p int) float64 {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[(len(s)-1)*p/100].Nanoseconds()) / 1000
}

var errNoValue = errors.New("the session has no user_id")
