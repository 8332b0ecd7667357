// Package doccheck holds the tests that keep the documentation honest: every
// ```go block in README.md and docs/*.md must compile against the module's
// packages as they are (TestGoSnippets), and every relative link and
// #anchor in those files must lead somewhere, with every page of docs/
// linking back to the README (TestLinks). It has no code of its own; run
// it with
//
//	go test ./internal/doccheck
//
// # How a Go block is compiled
//
// A block whose code starts with a package clause (after comments) is a
// whole file: it is type-checked alone, exactly as written.
//
// Any other block is a fragment, wrapped into a file of its own (blocks do
// not see each other):
//
//   - Lines at the outermost level that start a func declaration (not a
//     func literal), a type declaration or an import stay at package level;
//     everything else, in order, becomes the body of one function, which
//     returns an error (so `if err != nil { return err }` works).
//   - The fragment sees these variables, so it can use them without
//     declaring them: ctx context.Context, js jetstream.JetStream,
//     nc *nats.Conn, db *readmodel.DB, mux *http.ServeMux, app http.Handler
//     and r *http.Request. It may declare its own of the same names.
//   - Packages are imported by name: a fragment that uses bus.X, os.Getenv,
//     time.Second... gets the import. The names known are listed in
//     autoImports (doccheck_test.go): the module's packages, the standard
//     packages the docs use, nats, jetstream, scs, sqlx, zerolog and
//     prometheus. Any other package needs an import line in the block.
//   - A variable declared and not used, which a fragment often shows on
//     purpose (id, err := d.Dispatch(...)), is not an error; every other
//     type error is.
//   - Code must be Go: write elisions as comments (// ...), not as "...".
//
// When a fragment needs something a reader should not have to read (a type
// defined elsewhere on the page, a variable), put it in an HTML comment
// right before the fence; markdown renderers hide it, and the test compiles
// it as if it came first in the block:
//
//	<!-- doccheck
//	type ProcessItemImages struct{ ItemID int64 }
//	func (ProcessItemImages) Kind() string { return "process-item-images" }
//	-->
//	```go
//	workers.Register(w, func(ctx context.Context, job *workers.Job[ProcessItemImages]) error {
//		return nil
//	})
//	```
//
// Blocks of every other language (sh, console, json, yaml, text or none)
// are not compiled.
//
// # How the check runs
//
// The test asks `go list -export -deps` (in the module, with GOPROXY=off:
// no network) for the compiled export data of every package the blocks
// import, then type-checks each block with go/types. Errors name the
// markdown file and line, through //line directives in the wrapped source.
// When an exported name changes, the failure says which block uses the old
// one: change the block, not the test.
package doccheck
