package main

// What the commands share to read their command lines: positional
// arguments, --data, and the usage errors (exit status 2) for values that
// parse but are not allowed.

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/node"
)

// flagSetWithSynopsis adds positional-argument checks and --data to a
// flag set.
type flagSetWithSynopsis struct {
	*flag.FlagSet
	// data is --data: the data directory whose nats.url names the server
	// when NATS_URL is unset.
	data *string
}

// parseNoArgs parses args and refuses positional arguments and negative
// values (refuseNegative).
func (fs *flagSetWithSynopsis) parseNoArgs(args []string) error {
	rest, err := node.ParseFlags(fs.FlagSet, args)
	if err != nil {
		return err
	}
	if err := node.NoArgs(fs.FlagSet, rest); err != nil {
		return err
	}
	return fs.refuseNegative()
}

// parseArgs parses args and wants between lo and hi positional arguments
// (hi < 0: no upper bound), described as what; it refuses negative values
// (refuseNegative).
func (fs *flagSetWithSynopsis) parseArgs(args []string, lo, hi int, what string) ([]string, error) {
	rest, err := node.ParseFlags(fs.FlagSet, args)
	if err != nil {
		return nil, err
	}
	if len(rest) < lo || hi >= 0 && len(rest) > hi {
		fmt.Fprintf(fs.Output(), "%s: want %s, got %d arguments\n", fs.Name(), what, len(rest))
		fs.Usage()
		return nil, node.ErrUsage
	}
	return rest, fs.refuseNegative()
}

// refuseNegative is a usage error for the first flag given a negative
// number or duration ("--since -5m0s: must not be negative"): no count,
// limit or duration of the queue commands means anything below zero.
func (fs *flagSetWithSynopsis) refuseNegative() error {
	var bad *flag.Flag
	fs.Visit(func(f *flag.Flag) {
		if bad == nil && negative(f.Value) {
			bad = f
		}
	})
	if bad != nil {
		return node.UsageError(fs.FlagSet, "--%s %s: must not be negative", bad.Name, bad.Value)
	}
	return nil
}

// negative reports whether v holds a number or duration below zero.
func negative(v flag.Value) bool {
	g, ok := v.(flag.Getter)
	if !ok {
		return false
	}
	switch n := g.Get().(type) {
	case int:
		return n < 0
	case int64:
		return n < 0
	case float64:
		return n < 0
	case time.Duration:
		return n < 0
	}
	return false
}

// checkName is a usage error when v, the name of a queue, kind or
// schedule (what), breaks the naming rule.
func checkName(fs *flag.FlagSet, what, v string) error {
	if err := bus.ValidateName(what, v); err != nil {
		return node.UsageError(fs, "%s", invalidText(err))
	}
	return nil
}

// invalidText is err's message without the "invalid job: " of
// bus.ErrInvalid, for an error about a flag or an argument rather than a
// job.
func invalidText(err error) string {
	return strings.TrimPrefix(err.Error(), bus.ErrInvalid.Error()+": ")
}

// dataFlag registers --data, the data directory whose nats.url names the
// server when NATS_URL is unset (default: JETFLEET_DATA, else ./data).
func dataFlag(fs *flag.FlagSet, a *app) *string {
	return fs.String("data", a.dataDir, "data directory whose nats.url names the server when NATS_URL is unset")
}
