package wire_test

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// The wire contract's pure parts (what bus and workers build on), without a server: names, subjects, IDs,
// header values and the topology's settings.

func TestValidateName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "default", "send-welcome-email", "q_1", "0", strings.Repeat("a", 64)} {
		if err := wire.ValidateName("queue", ok); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", ok, err)
		}
	}
	for name, want := range map[string]string{
		"":                      "queue name is empty",
		strings.Repeat("a", 65): "is longer than 64 characters",
		"High":                  `queue name "High" may only use a-z, 0-9, _ and -`,
		"a.b":                   "may only use",
		"a b":                   "may only use",
		"a*":                    "may only use",
		"a>":                    "may only use",
		"é":                     "may only use",
	} {
		err := wire.ValidateName("queue", name)
		if !errors.Is(err, wire.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalid containing %q", name, err, want)
		}
	}
	if err := wire.ValidateName("kind", "A"); err == nil || !strings.Contains(err.Error(), `kind name "A"`) {
		t.Errorf("ValidateName(kind, A) = %v, want it to name the kind", err)
	}
}

func TestSubjectsAndNames(t *testing.T) {
	t.Parallel()
	for got, want := range map[string]string{
		wire.JobSubject("high", "resize"):        "jobs.high.resize",
		wire.QueueFilter("high"):                 "jobs.high.>",
		wire.ConsumerName("high"):                "q-high",
		wire.DLQSubject("high", "resize", "7"):   "dlq.high.resize.7",
		wire.DLQFilterForID("7"):                 "dlq.*.*.7",
		wire.JobIDSubject("high", "resize", "7"): "jobs.high.resize.7",
		wire.JobFilterForID("a.b"):               "jobs.*.*." + wire.IDToken("a.b"),
		wire.DelayFilterForID("7"):               "schedules.delay.*.7",
		wire.DLQFilterForID("a.b"):               "dlq.*.*." + wire.IDToken("a.b"),
		wire.RetryMsgID("welcome-7", 42):         "welcome-7:retry:42",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// An ID that is one subject token is its own token; any other becomes "h-"
// and the base64url of the first 18 bytes of its SHA-256 (the contract).
func TestIDToken(t *testing.T) {
	t.Parallel()
	hashed := func(id string) string {
		sum := sha256.Sum256([]byte(id))
		return "h-" + base64.RawURLEncoding.EncodeToString(sum[:18])
	}
	for _, id := range []string{"7", "welcome-7", "order:42", "NÖ-Ascii-é", "0FwzW1YhJ9tA6nQvHl4P8s", strings.Repeat("x", 128)} {
		if got := wire.IDToken(id); got != id {
			t.Errorf("IDToken(%q) = %q, want the ID itself", id, got)
		}
	}
	for _, id := range []string{"", "a.b", "a*", "a>", "a b", "tab\there", "nl\n", "del\x7f", strings.Repeat("x", 129)} {
		got := wire.IDToken(id)
		if got != hashed(id) || len(got) != 26 {
			t.Errorf("IDToken(%q) = %q, want %q (26 bytes)", id, got, hashed(id))
		}
		if got == wire.IDToken(id+"x") {
			t.Errorf("IDToken(%q) equals the token of another ID", id)
		}
	}
}

func TestParseJobSubject(t *testing.T) {
	t.Parallel()
	if q, k, err := wire.ParseJobSubject("jobs.high.resize-image"); q != "high" || k != "resize-image" || err != nil {
		t.Errorf("ParseJobSubject = %q, %q, %v", q, k, err)
	}
	if q, k, err := wire.ParseJobSubject("jobs.high.resize-image.order-42"); q != "high" || k != "resize-image" || err != nil {
		t.Errorf("ParseJobSubject with an ID token = %q, %q, %v", q, k, err)
	}
	for subject, want := range map[string]string{
		"jobs.high":            "is not jobs.<queue>.<kind>",
		"jobs.high.a.b.c":      "is not jobs.<queue>.<kind>",
		"jobs.high.a.":         "is not jobs.<queue>.<kind>",
		"dlq.high.resize":      "is not jobs.<queue>.<kind>",
		"":                     "is not jobs.<queue>.<kind>",
		"jobs.High.resize":     `queue name "High"`,
		"jobs.high.Resize":     `kind name "Resize"`,
		"jobs..resize":         "queue name is empty",
		"schedules.every.tick": "is not jobs.<queue>.<kind>",
	} {
		if _, _, err := wire.ParseJobSubject(subject); !errors.Is(err, wire.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseJobSubject(%q) = %v, want ErrInvalid containing %q", subject, err, want)
		}
	}
}

// Jetfleet-Timeout takes a Go duration or seconds.
func TestParseDuration(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"90":     90 * time.Second,
		" 90 ":   90 * time.Second,
		"1.5":    1500 * time.Millisecond,
		"0":      0,
		"1m30s":  90 * time.Second,
		"250ms":  250 * time.Millisecond,
		"2h":     2 * time.Hour,
		"-5":     -5 * time.Second,
		" 1m30s": 90 * time.Second,
	} {
		if got, err := wire.ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "soon", "90 s", "1m30", "s"} {
		if got, err := wire.ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) = %s, want an error", bad, got)
		}
	}
}

// Jetfleet-Backoff is a comma-separated list; FormatBackoff writes what
// ParseBackoff reads.
func TestParseAndFormatBackoff(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][]time.Duration{
		"1s,10s,60s":  {time.Second, 10 * time.Second, time.Minute},
		"1, 2 ,3":     {time.Second, 2 * time.Second, 3 * time.Second},
		"500ms":       {500 * time.Millisecond},
		"0,1m30s,1.5": {0, 90 * time.Second, 1500 * time.Millisecond},
	} {
		if got, err := wire.ParseBackoff(in); err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseBackoff(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1s,,2s", "1s,-1s", "1s,soon", ",", "1s;2s"} {
		got, err := wire.ParseBackoff(bad)
		if err == nil || !strings.Contains(err.Error(), "is not a list of durations like 1s,10s,60s") {
			t.Errorf("ParseBackoff(%q) = %v, %v; want an error naming the form", bad, got, err)
		}
	}
	for _, delays := range [][]time.Duration{
		{time.Second}, {time.Second, 90 * time.Second, 2 * time.Hour}, {1500 * time.Millisecond, 0},
	} {
		s := wire.FormatBackoff(delays)
		if got, err := wire.ParseBackoff(s); err != nil || !slices.Equal(got, delays) {
			t.Errorf("ParseBackoff(FormatBackoff(%v) = %q) = %v, %v", delays, s, got, err)
		}
	}
	if got := wire.FormatBackoff([]time.Duration{time.Second, 10 * time.Second}); got != "1s,10s" {
		t.Errorf("FormatBackoff = %q, want 1s,10s", got)
	}
	if got := wire.FormatBackoff(nil); got != "" {
		t.Errorf("FormatBackoff(nil) = %q, want empty", got)
	}
}

// A header value holds no line break and no more than its limit (at least
// 64 bytes); decoding gives the text back, with \r\n and \r as \n.
func TestEncodeHeaderTextExactly(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain":           "plain",
		"a\nb":            `a\nb`,
		"a\r\nb":          `a\nb`,
		"a\rb":            `a\nb`,
		`back\slash`:      `back\\slash`,
		`\n is not a nl`:  `\\n is not a nl`,
		"tab\tstays":      "tab\tstays",
		"trailing\\":      `trailing\\`,
		"":                "",
		"two\n\nnewlines": `two\n\nnewlines`,
	} {
		if got := wire.EncodeHeaderText(in, 1000); got != want {
			t.Errorf("EncodeHeaderText(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		`a\tb`:    `a\tb`, // an unknown escape is kept as it is
		`end\`:    `end\`,
		`\\n`:     `\n`,
		`x\\\ny`:  "x\\\ny",
		`only\nx`: "only\nx",
	} {
		if got := wire.DecodeHeaderText(in); got != want {
			t.Errorf("DecodeHeaderText(%q) = %q, want %q", in, got, want)
		}
	}
	for _, limit := range []int{0, 10, 64, 200} {
		got := wire.EncodeHeaderText(strings.Repeat("line\n", 100), limit)
		if len(got) > max(limit, 64) || !strings.HasSuffix(got, " …[truncated]") || strings.ContainsAny(got, "\r\n") {
			t.Errorf("limit %d: %d bytes %q", limit, len(got), got)
		}
	}
	if got := wire.EncodeHeaderText(strings.Repeat("x", 64), 64); got != strings.Repeat("x", 64) {
		t.Errorf("a text of exactly the limit was changed: %q", got)
	}
}

// The topology the DESIGN's wire contract describes, from the zero Config
// and from a set one.
func TestTopologyConfigs(t *testing.T) {
	t.Parallel()
	js := wire.JobsStreamConfig(wire.Topology{})
	if js.Name != "JOBS" || !slices.Equal(js.Subjects, []string{"jobs.>", "schedules.>", "batches.>"}) || !js.AllowAtomicPublish || !js.AllowMsgTTL || js.Retention != jetstream.WorkQueuePolicy ||
		js.Storage != jetstream.FileStorage || js.Replicas != 1 || js.Duplicates != 2*time.Minute || !js.AllowMsgSchedules || !js.AllowRollup || !js.AllowDirect {
		t.Errorf("JOBS from the zero Config = %+v", js)
	}
	dlq := wire.DLQStreamConfig(wire.Topology{})
	if dlq.Name != "DLQ" || !slices.Equal(dlq.Subjects, []string{"dlq.>"}) || dlq.Retention != jetstream.LimitsPolicy ||
		dlq.MaxAge != 7*24*time.Hour || !dlq.AllowDirect || dlq.Duplicates != 2*time.Minute {
		t.Errorf("DLQ from the zero Config = %+v", dlq)
	}
	c := wire.QueueConsumerConfig(wire.Topology{}, "high")
	if c.Durable != "q-high" || c.FilterSubject != "jobs.high.>" || c.AckPolicy != jetstream.AckExplicitPolicy ||
		c.MaxDeliver != -1 || c.AckWait != 30*time.Second || c.DeliverPolicy != jetstream.DeliverAllPolicy {
		t.Errorf("consumer of high from the zero Config = %+v", c)
	}

	cfg := wire.Topology{Replicas: 3, MemoryStorage: true, DuplicateWindow: time.Hour, FailedRetention: 10 * time.Minute, AckWait: 5 * time.Second}
	if js := wire.JobsStreamConfig(cfg); js.Replicas != 3 || js.Storage != jetstream.MemoryStorage || js.Duplicates != time.Hour {
		t.Errorf("JOBS from %+v = %+v", cfg, js)
	}
	// DLQ's duplicate window cannot exceed its MaxAge.
	if dlq := wire.DLQStreamConfig(cfg); dlq.Replicas != 3 || dlq.MaxAge != 10*time.Minute || dlq.Duplicates != 10*time.Minute {
		t.Errorf("DLQ from %+v = %+v", cfg, dlq)
	}
	if c := wire.QueueConsumerConfig(cfg, "low"); c.AckWait != 5*time.Second || c.Durable != "q-low" {
		t.Errorf("consumer of low from %+v = %+v", cfg, c)
	}
	if p := wire.PauseBucketConfig(cfg.Replicas); p.Bucket != bus.PauseBucket || p.Storage != jetstream.FileStorage || p.Replicas != 3 || p.History != 1 {
		t.Errorf("pause bucket = %+v", p)
	}
	if w := wire.WorkersBucketConfig(1); w.Bucket != bus.WorkersBucket || w.Storage != jetstream.MemoryStorage || w.TTL != bus.WorkerRecordTTL || w.Replicas != 1 {
		t.Errorf("workers bucket = %+v", w)
	}
}

func TestEncodeHeaderTextCutsOnCharacterAndEscapeBoundaries(t *testing.T) {
	t.Parallel()
	for _, s := range []string{strings.Repeat("é", 100), strings.Repeat("a\n", 100), strings.Repeat(`\`, 200), "x" + strings.Repeat("日本", 60)} {
		for limit := 64; limit < 90; limit++ {
			got := wire.EncodeHeaderText(s, limit)
			if !utf8.ValidString(got) || len(got) > limit {
				t.Fatalf("EncodeHeaderText(%q…, %d) = %q: %d bytes, valid UTF-8 %v", s[:8], limit, got, len(got), utf8.ValidString(got))
			}
			body := strings.TrimSuffix(got, " …[truncated]")
			if !strings.HasPrefix(s, wire.DecodeHeaderText(body)) {
				t.Fatalf("EncodeHeaderText(%q…, %d) decodes to %q, not a prefix of the text", s[:8], limit, wire.DecodeHeaderText(body))
			}
		}
	}
}

func TestParseDurationRefusesNonNumbers(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"NaN", "Inf", "-Inf", "1e10", "1e300"} {
		if d, err := wire.ParseDuration(v); err == nil {
			t.Errorf("ParseDuration(%q) = %s, want an error", v, d)
		}
	}
}

// Tags: at most MaxTags, each 1 to 64 bytes of printable ASCII without
// space, '.', '*', '>' or ','; duplicates dropped.
func TestValidateTags(t *testing.T) {
	t.Parallel()
	got, err := wire.ValidateTags([]string{"user:7", "order:42", "user:7", "App\\Models\\User:1", "tenant=acme/eu"})
	if err != nil || !slices.Equal(got, []string{"user:7", "order:42", "App\\Models\\User:1", "tenant=acme/eu"}) {
		t.Errorf("ValidateTags = %v, %v", got, err)
	}
	for _, bad := range [][]string{{""}, {"a b"}, {"a.b"}, {"a*"}, {"a>"}, {"a,b"}, {"é"}, {"tab\t"}, {strings.Repeat("x", 65)},
		{"1", "2", "3", "4", "5", "6", "7", "8", "9"}} {
		if _, err := wire.ValidateTags(bad); !errors.Is(err, wire.ErrInvalid) {
			t.Errorf("ValidateTags(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := wire.ValidateTags([]string{strings.Repeat("x", 64), "1", "2", "3", "4", "5", "6", "7"}); err != nil {
		t.Errorf("8 tags of up to 64 bytes refused: %v", err)
	}
}

// The history stream: one record per subject, bounded by age and bytes,
// the asynchronous persist mode only where JetStream allows it.
func TestHistoryStreamConfig(t *testing.T) {
	t.Parallel()
	h := wire.HistoryStreamConfig(wire.Topology{})
	if h.Name != "JETFLEET_HISTORY" || !slices.Equal(h.Subjects, []string{"jetfleet.status.>", "jetfleet.tags.>"}) || h.MaxMsgsPerSubject != 1 ||
		h.MaxAge != time.Hour || h.MaxBytes != 256<<20 || h.Discard != jetstream.DiscardOld || !h.AllowDirect ||
		h.PersistMode != jetstream.AsyncPersistMode || h.Duplicates != 2*time.Minute {
		t.Errorf("history stream from the zero Topology = %+v", h)
	}
	for _, top := range []wire.Topology{{Replicas: 3}, {MemoryStorage: true}, {Clustered: true}} {
		if h := wire.HistoryStreamConfig(top); h.PersistMode != jetstream.DefaultPersistMode {
			t.Errorf("history stream of %+v uses persist mode %v", top, h.PersistMode)
		}
	}
	if h := wire.HistoryStreamConfig(wire.Topology{CompletedRetention: time.Second, HistoryMaxBytes: 1 << 20}); h.MaxAge != time.Second || h.Duplicates != time.Second || h.MaxBytes != 1<<20 {
		t.Errorf("history stream with retention 1s = %+v", h)
	}
}

// The wire contract's pure parts (what bus and workers build on), without a server: names, subjects, IDs,
// header values and the topology's settings.

// An ID that is one subject token is its own token; any other becomes "h-"
// and the base64url of the first 18 bytes of its SHA-256 (the contract).
// Jetfleet-Timeout takes a Go duration or seconds.
// Jetfleet-Backoff is a comma-separated list; FormatBackoff writes what
// ParseBackoff reads.
// A header value holds no line break and no more than its limit (at least
// 64 bytes); decoding gives the text back, with \r\n and \r as \n.
// The topology the DESIGN's wire contract describes, from the zero Config
// and from a set one.
// A unique or limit key becomes one KV key token: plain bytes stay, every
// other byte is =XX, so different keys never share a token and a token
// never holds a dot.
func TestKeyToken(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]string{
		"sync-account-7": "sync-account-7",
		"sync-account:7": "sync-account=3A7",
		"a.b":            "a=2Eb",
		"a=b":            "a=3Db",
		"user 1/é":       "user=201=2F=C3=A9",
		"=3A":            "=3D3A",
	} {
		if got := wire.KeyToken(key); got != want {
			t.Errorf("KeyToken(%q) = %q, want %q", key, got, want)
		}
	}
	seen := map[string]string{}
	for _, key := range []string{"a:b", "a=3Ab", "a.b", "a=2Eb", "ab", "a b", "a_b", "a-b"} {
		tok := wire.KeyToken(key)
		if other, dup := seen[tok]; dup {
			t.Errorf("%q and %q share the token %q", key, other, tok)
		}
		seen[tok] = key
		if strings.ContainsAny(tok, ".*> ") {
			t.Errorf("token %q of %q is not one KV key token", tok, key)
		}
	}
}

func TestValidateKeyAndTTL(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"k", "sync-account:7", strings.Repeat("é", 64), "with space"} {
		if err := wire.ValidateKey("unique key", ok); err != nil {
			t.Errorf("ValidateKey(%q) = %v", ok, err)
		}
	}
	for key, want := range map[string]string{
		"":                       "unique key is empty",
		strings.Repeat("k", 129): "unique key is 129 bytes; the limit is 128",
		"tab\there":              "contains a control character",
		"\xff":                   "is not valid UTF-8",
	} {
		if err := wire.ValidateKey("unique key", key); !errors.Is(err, wire.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateKey(%q) = %v, want ErrInvalid saying %q", key, err, want)
		}
	}
	for d, want := range map[time.Duration]time.Duration{
		0: time.Second, 500 * time.Millisecond: time.Second, time.Second: time.Second,
		1001 * time.Millisecond: 2 * time.Second, time.Hour: time.Hour,
	} {
		if got := wire.TTL(d); got != want {
			t.Errorf("TTL(%s) = %s, want %s", d, got, want)
		}
	}
	for _, kc := range []jetstream.KeyValueConfig{wire.UniqueBucketConfig(3), wire.LimitsBucketConfig(3)} {
		if kc.History != 1 || kc.Replicas != 3 || kc.LimitMarkerTTL != wire.MarkerTTL || kc.TTL != 0 || kc.Storage != jetstream.FileStorage {
			t.Errorf("bucket %s = %+v: want history 1, 3 replicas, per-key TTLs (LimitMarkerTTL) and no bucket TTL", kc.Bucket, kc)
		}
	}
	if wire.ReleaseMsgID("welcome-7", 42) != "welcome-7:release:42" {
		t.Errorf("ReleaseMsgID = %q", wire.ReleaseMsgID("welcome-7", 42))
	}
}
