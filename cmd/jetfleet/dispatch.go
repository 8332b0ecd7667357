package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/node"
)

// maxStdinBody bounds what `dispatch -` reads; the server's max_payload
// (1 MiB by default) is far below it and is checked by the dispatcher.
const maxStdinBody = 64 << 20

// maxJobIDBytes is the longest job ID bus.JobID takes.
const maxJobIDBytes = 256

// jobFlags are the job settings that `dispatch` and `schedule add` accept.
type jobFlags struct {
	fs      *flag.FlagSet
	tries   int
	timeout string
	backoff string
	// delay, at, id, unique and tags exist for one-shot jobs only (dispatch).
	delay, at, id, unique string
	tags                  []string
}

// newJobFlags registers the job settings on fs; oneShot adds --delay, --at
// and --id, which periodic jobs do not take.
func newJobFlags(fs *flag.FlagSet, oneShot bool) *jobFlags {
	f := &jobFlags{fs: fs}
	fs.IntVar(&f.tries, "tries", 0, "deliveries the job may use, at least 1 (default: the worker's)")
	fs.StringVar(&f.timeout, "timeout", "", "time limit of one attempt, e.g. 90s (default: the worker's)")
	fs.StringVar(&f.backoff, "backoff", "", "delays before each retry, e.g. 1s,10s,60s; the last repeats (default: the worker's)")
	if oneShot {
		fs.StringVar(&f.delay, "delay", "", "make the job ready only after this duration, e.g. 10s")
		fs.StringVar(&f.at, "at", "", "make the job ready only at this RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
		fs.StringVar(&f.id, "id", "", "job ID; the same ID again within the duplicate window (2m) is stored once (default: random)")
		fs.Func("tag", "tag the job, e.g. user:7 (repeat for more; \"jetfleet queue jobs --tag user:7\" lists them)", func(v string) error {
			f.tags = append(f.tags, v)
			return nil
		})
		fs.StringVar(&f.unique, "unique", "", "unique key: KEY (held until the job succeeds or is dead-lettered) or KEY,for=1h (held 1h); a held key stores nothing and exits 4")
	}
	return f
}

// options checks the flags and turns them into dispatch options. A flag
// that is not allowed is a usage error naming the flag and its rule.
func (f *jobFlags) options() ([]bus.Option, error) {
	opts, err := f.check()
	if err != nil {
		return nil, node.UsageError(f.fs, "%s", invalidText(err))
	}
	return opts, nil
}

// check turns the flags into dispatch options; each error names the flag
// and its rule.
func (f *jobFlags) check() ([]bus.Option, error) {
	var opts []bus.Option
	if node.FlagsSet(f.fs)["tries"] {
		if f.tries < 1 {
			return nil, fmt.Errorf("--tries %d: must be at least 1", f.tries)
		}
		opts = append(opts, bus.Tries(f.tries))
	}
	if f.timeout != "" {
		d, err := bus.ParseDuration(f.timeout)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("--timeout %q: want a positive duration like 90s", f.timeout)
		}
		opts = append(opts, bus.Timeout(d))
	}
	if f.backoff != "" {
		delays, err := bus.ParseBackoff(f.backoff)
		if err != nil {
			return nil, fmt.Errorf("--backoff: %w", err)
		}
		opts = append(opts, bus.Backoff(delays...))
	}
	if f.delay != "" && f.at != "" {
		return nil, errors.New("--delay and --at both set: choose one")
	}
	if f.delay != "" {
		d, err := bus.ParseDuration(f.delay)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("--delay %q: want a positive duration like 10s", f.delay)
		}
		if time.Now().Add(d).After(bus.LastReadyAt()) {
			return nil, fmt.Errorf("--delay %q: the job would be due after %s, the last time NATS schedules handle", f.delay, bus.LastReadyAt().Format(time.RFC3339))
		}
		opts = append(opts, bus.Delay(d))
	}
	if f.at != "" {
		t, err := time.Parse(time.RFC3339, f.at)
		if err != nil {
			return nil, fmt.Errorf("--at %q: want an RFC 3339 time like 2026-01-02T15:04:05Z", f.at)
		}
		if t.After(bus.LastReadyAt()) {
			return nil, fmt.Errorf("--at %q: after %s, the last time NATS schedules handle", f.at, bus.LastReadyAt().Format(time.RFC3339))
		}
		opts = append(opts, bus.At(t))
	}
	if f.id != "" {
		if err := bus.ValidateJobID(f.id); err != nil {
			return nil, fmt.Errorf("--id: %s", invalidText(err))
		}
		if len(f.id) > maxJobIDBytes {
			return nil, fmt.Errorf("--id: job ID is %d bytes; the limit is %d", len(f.id), maxJobIDBytes)
		}
		opts = append(opts, bus.JobID(f.id))
	}
	if len(f.tags) > 0 {
		if err := bus.ValidateTags(f.tags...); err != nil {
			return nil, fmt.Errorf("--tag: %s", invalidText(err))
		}
		opts = append(opts, bus.Tags(f.tags...))
	}
	if node.FlagsSet(f.fs)["unique"] {
		opt, err := uniqueOption(f.unique)
		if err != nil {
			return nil, err
		}
		opts = append(opts, opt)
	}
	return opts, nil
}

// uniqueOption reads --unique: KEY, or KEY,for=D to hold the key for D
// whatever becomes of the job. The key itself may hold commas; only a
// last ",for=" part is an option.
func uniqueOption(v string) (bus.Option, error) {
	key, hold, hasFor := v, "", false
	if i := strings.LastIndex(v, ",for="); i >= 0 {
		key, hold, hasFor = v[:i], v[i+len(",for="):], true
	}
	if err := bus.ValidateKey("--unique key", key); err != nil {
		return nil, err
	}
	if !hasFor {
		return bus.Unique(key), nil
	}
	d, err := bus.ParseDuration(hold)
	if err != nil || d < time.Second {
		return nil, fmt.Errorf("--unique %q: for=%s: want a duration of at least 1s, like 1h", v, hold)
	}
	return bus.Unique(key, bus.UniqueFor(d)), nil
}

// exitDuplicate is the exit status of `dispatch --unique` when the key is
// held by another job (1 is an error, 2 a usage error, 3 a monitor alert).
const exitDuplicate = 4

// jobBody returns a job's JSON body from its argument: the argument itself,
// or standard input when it is "-". It must be valid JSON: an argument that
// is not is a usage error; standard input that is not, an error.
func jobBody(a *app, fs *flag.FlagSet, arg string) ([]byte, error) {
	if arg != "-" {
		if !json.Valid([]byte(arg)) {
			return nil, node.UsageError(fs, "the body argument is not valid JSON: %.80q", arg)
		}
		if !utf8.ValidString(arg) {
			return nil, node.UsageError(fs, "the body argument is not UTF-8: %.80q", arg)
		}
		return []byte(arg), nil
	}
	b, err := io.ReadAll(io.LimitReader(a.stdin, maxStdinBody))
	if err != nil {
		return nil, fmt.Errorf("read the body from standard input: %w", err)
	}
	body := bytes.TrimSpace(b)
	if len(body) == 0 {
		return nil, errors.New("standard input is empty; a job body is JSON, e.g. {}")
	}
	if !json.Valid(body) {
		return nil, fmt.Errorf("standard input is not valid JSON: %.80q", body)
	}
	return body, nil
}

// connectBus connects as node.ConnectNATS does (NATS_URL, else
// <data>/nats.url, else the default) and makes sure the jetfleet streams
// exist (bus.EnsureQueues): it creates them with default settings only when
// they are missing, so that a dispatch from the shell works on a fresh
// server but never rewrites the settings (replicas, windows) of a topology
// someone provisioned on purpose.
func connectBus(ctx context.Context, a *app, dataDir, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, js, err := node.ConnectNATS(a.getenv, dataDir, name)
	if err != nil {
		return nil, nil, err
	}
	nc.SetErrorHandler(node.LogAsyncErrors(a.log))
	cfg, err := bus.ConfigFromEnv(a.getenv) // JETFLEET_HISTORY=off: no history stream
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	if err := bus.EnsureQueues(ctx, js, cfg); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("NATS at %s: %w", node.ConnectedURL(nc), err)
	}
	return nc, js, nil
}

// openDispatcher connects with connectBus and returns a dispatcher and the
// function that closes its connection.
func openDispatcher(ctx context.Context, a *app, dataDir, name string) (*bus.Dispatcher, func(), error) {
	nc, js, err := connectBus(ctx, a, dataDir, name)
	if err != nil {
		return nil, nil, err
	}
	cfg, _ := bus.ConfigFromEnv(a.getenv) // connectBus checked it
	d, err := bus.NewDispatcher(js, cfg)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return d, nc.Close, nil
}

// runDispatch is `jetfleet dispatch <queue> <kind> <json|->`: it enqueues one
// job and prints its ID on standard output.
func runDispatch(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "dispatch", "dispatch <queue> <kind> <json|-> [--tries N] [--timeout D] [--backoff 1s,10s] [--delay D | --at RFC3339] [--id X] [--tag T]... [--unique KEY[,for=D]]\n\n"+
		"Enqueues one job on jobs.<queue>.<kind> and prints its ID. A body of - is read from standard input.\n"+
		"With --unique, a key held by another job stores nothing and exits 4, naming the holder.")
	jf := newJobFlags(fs, true)
	dataDir := dataFlag(fs, a)
	pos, err := node.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 3 {
		fmt.Fprintf(a.stderr, "jetfleet dispatch: want 3 arguments (queue, kind, body), got %d\n", len(pos))
		fs.Usage()
		return node.ErrUsage
	}
	queue, kind := pos[0], pos[1]
	if err := checkName(fs, "queue", queue); err != nil {
		return err
	}
	if err := checkName(fs, "kind", kind); err != nil {
		return err
	}
	opts, err := jf.options()
	if err != nil {
		return err
	}
	body, err := jobBody(a, fs, pos[2])
	if err != nil {
		return err
	}

	d, closeConn, err := openDispatcher(ctx, a, *dataDir, "jetfleet dispatch")
	if err != nil {
		return err
	}
	defer closeConn()
	id, err := d.DispatchJSON(ctx, kind, body, append(opts, bus.OnQueue(queue))...)
	var dup *bus.DuplicateError
	if errors.As(err, &dup) {
		fmt.Fprintf(a.stderr, "jetfleet dispatch: not stored: unique key %q is held by job %s\n", dup.Key, dup.JobID)
		return node.ExitCode(exitDuplicate)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, id)
	return nil
}
