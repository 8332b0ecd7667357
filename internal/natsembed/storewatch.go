package natsembed

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// StoreWatch configures WatchStore. The zero value uses the defaults.
type StoreWatch struct {
	// Interval is how often the server's streams are checked. Default 1s.
	Interval time.Duration
	// MinFree is how many bytes must be free on the store's filesystem
	// before the server is restarted. Default 16 MiB.
	MinFree uint64
	// MinGap is the least time between two restarts, so a filesystem that
	// fills again at once is not restarted on in a loop. Default 30s.
	MinGap time.Duration
	// Logger receives what the watch sees and does.
	Logger zerolog.Logger
}

// Defaults of StoreWatch.
const (
	DefaultStoreWatchInterval = time.Second
	DefaultStoreMinFree       = 16 << 20
	DefaultStoreMinGap        = 30 * time.Second
)

func (w StoreWatch) withDefaults() StoreWatch {
	if w.Interval <= 0 {
		w.Interval = DefaultStoreWatchInterval
	}
	if w.MinFree == 0 {
		w.MinFree = DefaultStoreMinFree
	}
	if w.MinGap <= 0 {
		w.MinGap = DefaultStoreMinGap
	}
	return w
}

// ErrClustered is returned by WatchStore for a clustered server.
var ErrClustered = errors.New("natsembed: the store watch runs on a single node only")

// StoreWriteError is the first stream write error the server keeps, as its
// health check reports it ("JetStream stream '$G > JOBS' write error: write
// .../1.blk: no space left on device"), or nil when none has one.
//
// nats-server keeps a stream's write error until it restarts: until then
// that stream stores nothing and answers no publish (a client's publish
// times out).
func (s *Server) StoreWriteError() error {
	h := s.current().Healthz(&server.HealthzOptions{Details: true})
	for _, e := range h.Errors {
		if e.Type == server.HealthzErrorStream && strings.Contains(e.Error, "write error") {
			return errors.New(e.Error)
		}
	}
	return nil
}

// isOutOfSpace reports whether a write error says the filesystem is full
// (ENOSPC, or EDQUOT for a user's quota): an error that more free space
// cures.
func isOutOfSpace(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "no space left on device") || strings.Contains(msg, "disk quota exceeded")
}

// WatchStore makes a single node recover by itself from a full store
// filesystem, until ctx ends. Every Interval it asks the server whether a
// stream keeps a write error; when one does because the filesystem was full
// and MinFree bytes are free on it again, it restarts the server in the
// process (Restart), which clears the error: publishes are acknowledged
// again once clients have reconnected. It logs the error when it appears,
// each restart, and once a write error that free space does not cure
// (permission denied, an I/O error), which it leaves to an operator.
//
// A clustered server is not watched (ErrClustered): there nats-server
// disables JetStream on the node whose store is out of space, the other
// nodes carry on, and the node comes back when it is restarted.
func (s *Server) WatchStore(ctx context.Context, w StoreWatch) error {
	if s.current().JetStreamIsClustered() || s.cfg.ClusterListen != "" {
		return ErrClustered
	}
	w = w.withDefaults()
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	var (
		seen        string    // the write error last logged
		lastRestart time.Time // when the server was last restarted
		waitLogged  bool      // the wait for space was logged
		down        bool      // the last restart failed
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if down {
			// The last restart failed: the server is down; try again.
			if time.Since(lastRestart) < w.MinGap {
				continue
			}
			lastRestart = time.Now()
			if down = s.restart(w) != nil; !down {
				seen, waitLogged = "", false
			}
			continue
		}
		werr := s.StoreWriteError()
		if werr == nil {
			seen, waitLogged = "", false
			continue
		}
		if werr.Error() != seen {
			seen = werr.Error()
			if !isOutOfSpace(werr) {
				w.Logger.Error().Str("store", s.StoreDir()).Err(werr).
					Msg("the JetStream store cannot write, and not for lack of space: publishes to that stream are not acknowledged until an operator fixes the store and restarts this node")
				continue
			}
			w.Logger.Error().Str("store", s.StoreDir()).Err(werr).Uint64("min_free", w.MinFree).
				Msg("the JetStream store's filesystem is full: publishes to that stream are not acknowledged; the server restarts by itself once min_free bytes are free")
		}
		if !isOutOfSpace(werr) || time.Since(lastRestart) < w.MinGap {
			continue
		}
		free, err := FreeBytes(s.StoreDir())
		if err != nil {
			if !waitLogged {
				w.Logger.Error().Err(err).Msg("cannot tell the free space of the JetStream store: restart this node once space is back")
				waitLogged = true
			}
			continue
		}
		if free < w.MinFree {
			continue
		}
		lastRestart = time.Now()
		w.Logger.Warn().Str("store", s.StoreDir()).Uint64("free", free).Err(werr).
			Msg("space is back on the JetStream store's filesystem: restarting the embedded NATS server to clear the write error")
		if down = s.restart(w) != nil; !down {
			seen, waitLogged = "", false
		}
	}
}

// restart restarts the server, waits for its JetStream and logs how it
// went.
func (s *Server) restart(w StoreWatch) error {
	start := time.Now()
	err := s.Restart()
	if err == nil {
		if err = s.JetStreamReady(30 * time.Second); err != nil {
			err = fmt.Errorf("after a restart: %w", err)
		}
	}
	if err != nil {
		w.Logger.Error().Err(err).Dur("retry_in", w.MinGap).Msg("restarting the embedded NATS server failed")
		return err
	}
	w.Logger.Info().Dur("took", time.Since(start)).Msg("embedded NATS server restarted: JetStream stores again")
	return nil
}
