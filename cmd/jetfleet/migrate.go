package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/jetfleet/jetfleet/internal/catalog/migrations"
	"github.com/jetfleet/jetfleet/readmodel"
)

// runMigrate is `jetfleet migrate`: it applies the reference app's schema to
// the database the DB_* settings name (SQLite at ./data/jetfleet.db by
// default). Several processes may run it at once; each migration is applied
// once.
func runMigrate(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "migrate", "migrate\n\n"+
		"Applies the database schema that this binary embeds to the database named by DB_CONNECTION,\n"+
		"DB_HOST/DB_WRITE_HOST, DB_PORT, DB_DATABASE, DB_USERNAME and DB_PASSWORD (default: SQLite\n"+
		"at ./data/jetfleet.db). Safe to run from several processes at once.")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		fs.Usage()
		return errUsage
	}
	db, err := openReadModel(ctx, a)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := readmodel.Migrate(ctx, db, migrations.FS)
	for _, name := range applied {
		fmt.Fprintf(a.stdout, "applied %s\n", name)
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(a.stdout, "nothing to apply: the schema is up to date")
	}
	return nil
}

// openReadModel opens the database from the DB_* settings; SQLite's file
// defaults to jetfleet.db in the data directory.
func openReadModel(ctx context.Context, a *app) (*readmodel.DB, error) {
	cfg, err := readmodel.ConfigFromEnv(a.getenv)
	if err != nil {
		return nil, err
	}
	if cfg.Driver == "" || cfg.Driver == readmodel.DriverSQLite {
		if cfg.Database == "" {
			cfg.Database = filepath.Join(a.dataDir, "jetfleet.db")
		}
	}
	cfg.Logger = a.log
	a.obs.instrumentReadModel(&cfg)
	return readmodel.Open(ctx, cfg)
}
