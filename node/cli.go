package node

// What every jetfleet command line shares — jetfleet's own binary and the
// binaries a team builds with this package, which may add commands of their
// own: flag sets whose usage names the program, flags that may follow
// positional arguments, exit codes, and a context that ends on SIGINT or
// SIGTERM.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
)

// ErrUsage marks an error already explained to the user by a flag set's
// usage: the program exits with status 2 and prints nothing more.
var ErrUsage = errors.New("usage")

// ExitCode is returned by a command that already printed its result and
// only needs the process to exit with the given status.
type ExitCode int

func (e ExitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// ExitStatus is the process exit status for err, printing err to stderr when
// it has not been explained yet: 0 for nil or a help request, 2 for a usage
// error, the code of an ExitCode, else 1 after "<prog> <command>: <err>".
func ExitStatus(stderr io.Writer, prog, command string, err error) int {
	var ec ExitCode
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	case errors.As(err, &ec):
		return int(ec)
	}
	fmt.Fprintf(stderr, "%s %s: %v\n", prog, command, err)
	return 1
}

// NewFlagSet makes a flag set for "<prog> <name>" whose usage prints the
// synopsis (the command line after the program's name, then any
// explanation) and the flags to w.
func NewFlagSet(w io.Writer, prog, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(prog+" "+name, flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() {
		fmt.Fprintf(w, "Usage: %s %s\n", prog, synopsis)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(w, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// ParseFlags parses args and returns the positional arguments. Flags may follow
// them (`dispatch high kind '{}' --tries 3`); "--" ends the flags. A bad
// flag is ErrUsage (the flag set has explained it); -h is flag.ErrHelp.
func ParseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, ErrUsage
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
		if rest[0] == "--" {
			return append(positional[:len(positional)-1], args...), nil
		}
	}
}

// UsageError prints "<command>: <message>" and the usage of fs, and
// returns ErrUsage: a flag or argument value that is not allowed, which
// exits 2 like a flag that does not parse.
func UsageError(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return ErrUsage
}

// NoArgs refuses positional arguments for a command that takes none.
func NoArgs(fs *flag.FlagSet, args []string) error {
	if len(args) > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), args[0])
		fs.Usage()
		return ErrUsage
	}
	return nil
}

// ParseNoArgs is ParseFlags followed by NoArgs.
func ParseNoArgs(fs *flag.FlagSet, args []string) error {
	rest, err := ParseFlags(fs, args)
	if err != nil {
		return err
	}
	return NoArgs(fs, rest)
}

// FlagsSet reports which flags of fs the user passed.
func FlagsSet(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// SplitList splits a comma-separated list, dropping blanks.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// SignalContext returns a context that ends on the first SIGINT or SIGTERM,
// so the command can drain; a second signal exits the process at once with
// status 130. stop releases the signal handler.
func SignalContext(log zerolog.Logger) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig, ok := <-ch
		if !ok {
			return
		}
		log.Info().Str("signal", sig.String()).Msg("draining; send the signal again to exit at once")
		cancel()
		if _, ok := <-ch; ok {
			log.Warn().Msg("second signal: exiting now")
			os.Exit(130)
		}
	}()
	return ctx, func() { signal.Stop(ch); close(ch); cancel() }
}
