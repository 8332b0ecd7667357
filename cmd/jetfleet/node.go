package main

import (
	"context"
	"slices"
	"strings"

	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	"github.com/jetfleet/jetfleet/node"
)

// jetfleet's own web node and worker are package node's with no app of
// their own: /up, /metrics and the dashboard; the diagnostic jobs. A team's
// binary gets the same commands, with its routes and jobs, from node.Main.

// runServe is `jetfleet serve`: an operations web node.
func runServe(ctx context.Context, a *app, args []string) error {
	return node.RunCommand(ctx, node.App{Name: "jetfleet"}, "serve", args, a.nodeConfig())
}

// runWork is `jetfleet work`: a worker process of the diagnostic jobs.
func runWork(ctx context.Context, a *app, args []string) error {
	if i := slices.IndexFunc(args, isNoCatalog); i >= 0 {
		a.log.Warn().Msg("--no-catalog is no longer needed and is ignored: `jetfleet work` runs only the diagnostic jobs; " +
			"the catalog demo's jobs run in its own binary (go run ./examples/catalog work) or in `jetfleet up`")
		args = slices.Delete(slices.Clone(args), i, i+1)
	}
	return node.RunCommand(ctx, node.App{Name: "jetfleet"}, "work", args, a.nodeConfig())
}

// isNoCatalog reports whether arg is the retired --no-catalog flag, in
// any of the forms package flag accepts.
func isNoCatalog(arg string) bool {
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	return strings.HasPrefix(arg, "-") && name == "no-catalog"
}

// runMigrate is `jetfleet migrate`: the catalog demo's schema, the one
// `jetfleet up` applies by itself.
func runMigrate(ctx context.Context, a *app, args []string) error {
	app := catalog.App(catalog.Config{})
	app.Name = "jetfleet"
	return node.RunCommand(ctx, app, "migrate", args, a.nodeConfig())
}
