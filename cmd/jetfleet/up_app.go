package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/jetfleet/jetfleet/internal/catalog"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/workers"
)

// The parts of `jetfleet up` above the job bus: the read model, the
// catalog, the HTTP node and the workers.

// startReadModel opens the database (DB_* when set, else SQLite at
// <data>/jetfleet.db) and applies the schema; migrating is safe from several
// processes at once and does nothing when the schema is up to date.
func (s *system) startReadModel(ctx context.Context) error {
	db, err := openCatalogDB(ctx, s.a, s.opts.dataDir, true)
	if err != nil {
		return err
	}
	s.db = db
	s.onStop("readmodel", func() { db.Close() })
	where := absPath(filepath.Join(s.opts.dataDir, "jetfleet.db"))
	if db.Driver() != readmodel.DriverSQLite {
		where = s.a.getenv("DB_DATABASE") + " on " + db.Members()[0].Addr
	}
	s.log.Info().Str("db", db.Driver()).Str("where", where).Msg("read model ready")
	return nil
}

// startCatalog opens the reference app (its image bucket is created when
// missing).
func (s *system) startCatalog(ctx context.Context) error {
	cfg, err := catalogConfig(s.a)
	if err != nil {
		return err
	}
	if s.a.getenv("JETFLEET_IMAGE_REPLICAS") == "" {
		cfg.ImageReplicas = s.opts.replicas
	}
	s.cat, err = catalog.New(ctx, s.js, s.db, cfg)
	return err
}

// startHTTP serves the catalog and /up until ctx ends, then drains. When the
// default address is taken it listens on a free port instead, and says so.
func (s *system) startHTTP(ctx context.Context) error {
	ln, fellBack, err := listenHTTP(s.opts.httpListen, s.opts.httpListenSet)
	if err != nil {
		return err
	}
	node, err := newWebNode(ctx, s.a, s.nc, s.js, s.db, s.cat, nodeOptions{replicas: s.opts.replicas, natsDownAfter: defaultNATSDownAfter})
	if err != nil {
		ln.Close()
		return err
	}
	s.httpURL = httpURL(ln.Addr())
	if fellBack {
		s.log.Warn().Str("wanted", s.opts.httpListen).Str("http_url", s.httpURL).
			Msgf("%s is taken; the web node listens on a free port instead", s.opts.httpListen)
		fmt.Fprintf(s.a.stderr, "jetfleet: WARNING: %s is taken, so the web node listens on %s instead (pass --listen to choose).\n", s.opts.httpListen, s.httpURL)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := node.health.Serve(ctx, newHTTPServer(s.a, node.handler), ln, drainOptions(s.a, s.opts.drainDelay, s.opts.grace))
		if err != nil {
			s.fail(fmt.Errorf("http: %w", err))
		}
	}()
	s.onStop("http", func() { <-done })
	s.log.Info().Str("http_url", s.httpURL).Msg("web node serving the catalog and /up")
	return nil
}

// startWorkers runs one worker for every queue of --queues, in that
// priority order, with the diagnostic kinds and the catalog's jobs.
func (s *system) startWorkers(ctx context.Context) error {
	if s.opts.noWorkers {
		return nil
	}
	busCfg, err := busSettings(s.a.getenv)
	if err != nil {
		return err
	}
	busCfg.Replicas = s.opts.replicas
	wcfg := workers.Config{
		Queues: s.opts.queues, Grace: s.opts.grace, Bus: busCfg, Logger: s.log,
	}
	stopSamples := s.a.obs.instrumentWorkers(ctx, s.a, s.js, &wcfg) // metrics and the dashboard's samples
	w := workers.New(s.js, wcfg)
	workers.RegisterDiagnostics(w)
	s.cat.RegisterJobs(w)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			s.fail(fmt.Errorf("workers: %w", err))
		}
	}()
	s.onStop("workers", func() { <-done; stopSamples() })
	return nil
}
