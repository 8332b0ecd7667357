package node

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// NewLogger returns the one logger a jetfleet process passes around,
// writing to w: JSON lines by default, a console format when w is a
// terminal. Level is a zerolog level name ("debug",
// "info", "warn", "error"); empty means info. Format is "json", "console" or
// "" (console when w is a terminal, JSON otherwise). When w is a
// *LogWriter, JSON lines go out in its batches and the console format
// straight to the writer beneath it, for a person reading as it comes.
func NewLogger(w io.Writer, level, format string) zerolog.Logger {
	lvl, err := parseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	beneath := w
	if lw, ok := w.(*LogWriter); ok {
		beneath = lw.out
	}
	if format == "console" || (format == "" && isTerminal(beneath)) {
		w = zerolog.ConsoleWriter{Out: beneath, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// NewProcessLogger is the logger of a process writing to its standard
// error (stderr), set by LOG_LEVEL, LOG_FORMAT and LOG_FLUSH_INTERVAL,
// read through getenv. LOG_FLUSH_INTERVAL unset or 0 writes each line at
// once; a duration (10ms) has the LogWriter write the lines in batches.
// Close the LogWriter before the process exits, so that the lines it
// holds are written.
func NewProcessLogger(getenv func(string) string, stderr io.Writer) (*LogWriter, zerolog.Logger, error) {
	var every time.Duration
	if v := strings.TrimSpace(getenv("LOG_FLUSH_INTERVAL")); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return nil, zerolog.Logger{}, fmt.Errorf("LOG_FLUSH_INTERVAL=%q is not a duration such as 10ms (0 writes each line at once)", v)
		}
		every = d
	}
	level, format := getenv("LOG_LEVEL"), getenv("LOG_FORMAT")
	if _, err := parseLevel(level); err != nil {
		return nil, zerolog.Logger{}, err
	}
	if format != "" && format != "json" && format != "console" {
		return nil, zerolog.Logger{}, fmt.Errorf("LOG_FORMAT=%q: want json or console", format)
	}
	lw := NewLogWriter(stderr, every)
	return lw, NewLogger(lw, level, format), nil
}

// parseLevel reads a log level: zerolog's names (trace, debug, info,
// warn, error) and Laravel's (notice is info; warning is warn; critical,
// alert and emergency are error); empty is info.
func parseLevel(level string) (zerolog.Level, error) {
	switch l := strings.ToLower(strings.TrimSpace(level)); l {
	case "":
		return zerolog.InfoLevel, nil
	case "trace", "debug", "info", "warn", "error":
		return zerolog.ParseLevel(l)
	case "notice":
		return zerolog.InfoLevel, nil
	case "warning":
		return zerolog.WarnLevel, nil
	case "critical", "alert", "emergency":
		return zerolog.ErrorLevel, nil
	}
	return zerolog.InfoLevel, fmt.Errorf("LOG_LEVEL=%q: want debug, info, notice, warning (warn), error, critical, alert or emergency", level)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// LogAsyncErrors is a NATS error handler that writes the connection's
// asynchronous errors (a slow consumer, a watcher whose consumer went
// quiet while the server was away) to log at warn, naming the
// subscription's subject. nats.go's default handler prints them to stderr
// as plain text, a line a JSON log reader cannot parse. The node sets it on
// the connections it makes; set it on a Config.Conn of your own with
// nc.SetErrorHandler.
func LogAsyncErrors(log zerolog.Logger) nats.ErrHandler {
	return func(_ *nats.Conn, sub *nats.Subscription, err error) {
		ev := log.Warn().Err(err)
		if sub != nil {
			ev = ev.Str("subject", sub.Subject)
		}
		ev.Msg("nats: asynchronous error")
	}
}
