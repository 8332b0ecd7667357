package logtest_test

import (
	"errors"
	"log"
	"testing"

	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/internal/logtest"
)

// Every package's Config.Logger is a zerolog.Logger whose zero value means
// "log nothing". This pins that down for the zerolog version in go.mod: a
// zero Logger, and any logger derived from it, is safe to call at every
// level and writes nowhere.
func TestZeroLoggerIsSafeAndSilent(t *testing.T) {
	var zero zerolog.Logger
	derived := zero.With().Str("component", "test").Logger()
	for _, l := range []zerolog.Logger{zero, derived, zero.Level(zerolog.TraceLevel)} {
		for _, e := range []*zerolog.Event{l.Trace(), l.Debug(), l.Info(), l.Warn(), l.Error(), l.Err(errors.New("x")), l.Log(), l.WithLevel(zerolog.ErrorLevel)} {
			if e.Enabled() {
				t.Errorf("an event of a zero logger is enabled")
			}
			e.Str("k", "v").Err(errors.New("boom")).Msgf("hello %d", 1)
		}
		l.Print("print")
		l.Printf("printf %d", 2)
		if n, err := l.Write([]byte("line\n")); n != 5 || err != nil {
			t.Errorf("Write = %d, %v", n, err)
		}
		log.New(l, "", 0).Print("through the standard library")
	}
}

func TestRecorderDecodesEvents(t *testing.T) {
	l, rec := logtest.New()
	l.Warn().Err(errors.New("boom")).Str("path", "/x").Msg("hello")
	l.Debug().Msg("quiet")
	got := rec.Entries()
	if len(got) != 2 || got[0].Str("level") != "warn" || got[0].Str("error") != "boom" || got[0].Str("path") != "/x" ||
		got[0].Str("message") != "hello" || got[1].Str("level") != "debug" {
		t.Fatalf("entries = %v", got)
	}
}
