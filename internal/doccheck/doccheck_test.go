package doccheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/scanner"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// autoImports maps the package names a fragment may use without an import
// line to their import paths. Add a package here when the docs start to
// use it (a new public package of the module, say); anything else can be
// imported by an import line in the block.
var autoImports = map[string]string{
	// the module
	"bus":          "github.com/jetfleet/jetfleet/bus",
	"dashboard":    "github.com/jetfleet/jetfleet/dashboard",
	"healthz":      "github.com/jetfleet/jetfleet/healthz",
	"jetfleettest": "github.com/jetfleet/jetfleet/jetfleettest",
	"leaderless":   "github.com/jetfleet/jetfleet/leaderless",
	"metrics":      "github.com/jetfleet/jetfleet/metrics",
	"node":         "github.com/jetfleet/jetfleet/node",
	"readmodel":    "github.com/jetfleet/jetfleet/readmodel",
	"scsstore":     "github.com/jetfleet/jetfleet/sessions/scsstore",
	"sessions":     "github.com/jetfleet/jetfleet/sessions",
	"workers":      "github.com/jetfleet/jetfleet/workers",
	// its dependencies
	"jetstream":  "github.com/nats-io/nats.go/jetstream",
	"nats":       "github.com/nats-io/nats.go",
	"prometheus": "github.com/prometheus/client_golang/prometheus",
	"scs":        "github.com/alexedwards/scs/v2",
	"sqlx":       "github.com/jmoiron/sqlx",
	"zerolog":    "github.com/rs/zerolog",
	// the standard library
	"context": "context",
	"errors":  "errors",
	"fmt":     "fmt",
	"http":    "net/http",
	"io":      "io",
	"json":    "encoding/json",
	"log":     "log",
	"os":      "os",
	"signal":  "os/signal",
	"sql":     "database/sql",
	"strings": "strings",
	"testing": "testing",
	"syscall": "syscall",
	"time":    "time",
}

// givens are the variables every fragment may use without declaring them,
// with the package names their types need.
const givens = `var (
	ctx context.Context
	js  jetstream.JetStream
	nc  *nats.Conn
	db  *readmodel.DB
	mux *http.ServeMux
	app http.Handler
	r   *http.Request
)
`

// givenImports are the packages the givens' types name.
var givenImports = []string{"context", "jetstream", "nats", "readmodel", "http"}

// wrapperName is the file name of the generated parts of a wrapped
// fragment: an error positioned there is the wrapper's, not the block's.
const wrapperName = "doccheck-wrapper.go"

// TestGoSnippets type-checks every ```go block of README.md and docs/*.md
// (see the package doc for how fragments are wrapped).
func TestGoSnippets(t *testing.T) {
	root := moduleRoot(t)
	blocks := goBlocks(t, root)
	if len(blocks) == 0 {
		t.Fatal("no ```go block found in README.md and docs/*.md: the extraction is broken")
	}

	errs := checkBlocks(t, root, blocks)
	for i, b := range blocks {
		t.Run(b.name(), func(t *testing.T) {
			if len(errs[i].errs) == 0 {
				return
			}
			t.Errorf("%s: this ```go block does not compile:\n\t%s\n\n%s\n%s",
				b.name(), strings.Join(errs[i].errs, "\n\t"), hint(b),
				listing(errs[i].src))
		})
	}
}

// result is what checkBlocks found for one block: the source it
// type-checked and its errors ("file.md:line:col: message").
type result struct {
	src  string
	errs []string
}

// checkBlocks makes each block a file and type-checks it against the
// export data of the packages the files import, built in the module root.
func checkBlocks(t *testing.T, root string, blocks []*block) []result {
	t.Helper()
	fset := token.NewFileSet()
	units := make([]*unit, len(blocks))
	paths := map[string]bool{}
	for i, b := range blocks {
		units[i] = b.unit(fset)
		for _, p := range units[i].imports {
			paths[p] = true
		}
	}
	exports := exportData(t, root, paths)
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok || f == "" {
			return nil, fmt.Errorf("no export data for %q (is it a package of the module or of a module go.mod requires?)", path)
		}
		return os.Open(f)
	})
	out := make([]result, len(units))
	for i, u := range units {
		out[i] = result{src: u.src, errs: u.check(fset, imp)}
	}
	return out
}

// hint says how the block was compiled and what to do about a failure.
func hint(b *block) string {
	how := "It is a whole file (it has a package clause) and is compiled as written."
	if !b.whole {
		how = "It is a fragment: its statements run in a func returning error, it sees ctx, js, nc, db, mux, app and r,\n" +
			"and it gets imports by package name (autoImports in internal/doccheck/doccheck_test.go;\n" +
			"other packages need an import line in the block, or in a <!-- doccheck --> comment before it)."
	}
	return how + "\nIf an exported name changed, update the block in the markdown file to the new API;\n" +
		"internal/doccheck/doc.go describes the convention. The source as type-checked:"
}

// listing returns src as the reader of a failure wants it: each line with
// the markdown line it came from (blank for the wrapper's own lines), the
// //line directives left out.
func listing(src string) string {
	var sb strings.Builder
	file, line := "", 0
	for _, l := range strings.Split(strings.TrimRight(src, "\n"), "\n") {
		if rest, ok := strings.CutPrefix(l, "//line "); ok {
			// //line FILE:LINE:COL: the next line is FILE:LINE.
			rest = rest[:strings.LastIndex(rest, ":")]
			i := strings.LastIndex(rest, ":")
			file, line = rest[:i], 0
			fmt.Sscan(rest[i+1:], &line)
			if file == wrapperName {
				file = ""
			}
			continue
		}
		where := ""
		if file != "" {
			where = fmt.Sprintf("%s:%d", file, line)
		}
		fmt.Fprintf(&sb, "\t%-24s| %s\n", where, l)
		line++
	}
	return sb.String()
}

// moduleRoot returns the directory of the module's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// docFiles lists README.md and docs/*.md, relative to root.
func docFiles(t *testing.T, root string) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"README.md"}
	for _, d := range docs {
		rel, err := filepath.Rel(root, d)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.ToSlash(rel))
	}
	return files
}

// block is one ```go block of a markdown file.
type block struct {
	file string // relative to the module root, e.g. docs/workers.md
	line int    // line of the block's first code line (1-based)
	code string
	// hidden is the Go code of a <!-- doccheck ... --> comment right
	// before the fence, which starts at hiddenLine.
	hidden     string
	hiddenLine int
	whole      bool // the code has a package clause
}

func (b *block) name() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

// goBlocks extracts every ```go block of README.md and docs/*.md.
func goBlocks(t *testing.T, root string) []*block {
	t.Helper()
	var blocks []*block
	for _, f := range docFiles(t, root) {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, parseMarkdown(f, string(data))...)
	}
	return blocks
}

// fence is an opening or closing code fence: its indentation, its marker
// (``` or ~~~, at least three) and its info string.
type fence struct {
	indent int
	marker string
	info   string
}

// parseFence reports whether line is a code fence.
func parseFence(line string) (fence, bool) {
	trimmed := strings.TrimLeft(line, " \t")
	indent := len(line) - len(trimmed)
	for _, c := range []byte{'`', '~'} {
		n := 0
		for n < len(trimmed) && trimmed[n] == c {
			n++
		}
		if n >= 3 {
			info := strings.TrimSpace(trimmed[n:])
			if c == '`' && strings.Contains(info, "`") {
				return fence{}, false // inline code, not a fence
			}
			return fence{indent: indent, marker: trimmed[:n], info: info}, true
		}
	}
	return fence{}, false
}

// parseMarkdown returns the ```go blocks of one markdown file.
func parseMarkdown(file, text string) []*block {
	lines := strings.Split(text, "\n")
	var blocks []*block
	for i := 0; i < len(lines); i++ {
		open, ok := parseFence(lines[i])
		if !ok {
			continue
		}
		// The block runs to a closing fence of the same character, at
		// least as long, with no info string (or to the end of the file).
		var code []string
		j := i + 1
		for ; j < len(lines); j++ {
			if c, ok := parseFence(lines[j]); ok && c.marker[0] == open.marker[0] &&
				len(c.marker) >= len(open.marker) && c.info == "" {
				break
			}
			code = append(code, dedent(lines[j], open.indent))
		}
		if lang, _, _ := strings.Cut(open.info, " "); lang == "go" {
			b := &block{file: file, line: i + 2, code: strings.Join(code, "\n") + "\n"}
			b.hidden, b.hiddenLine = hiddenCode(lines, i)
			b.whole = hasPackageClause(b.code)
			blocks = append(blocks, b)
		}
		i = j
	}
	return blocks
}

// dedent removes up to n leading spaces (a fence's indentation) from line.
func dedent(line string, n int) string {
	for k := 0; k < n && strings.HasPrefix(line, " "); k++ {
		line = line[1:]
	}
	return line
}

// hiddenCode returns the Go code of a "<!-- doccheck ... -->" comment that
// ends on the line before the fence at lines[fenceAt] (blank lines between
// are allowed), and the line of the file where that code starts.
func hiddenCode(lines []string, fenceAt int) (string, int) {
	end := fenceAt - 1
	for end >= 0 && strings.TrimSpace(lines[end]) == "" {
		end--
	}
	if end < 0 || !strings.HasSuffix(strings.TrimSpace(lines[end]), "-->") {
		return "", 0
	}
	start := end
	for start > 0 && !strings.Contains(lines[start], "<!--") {
		start--
	}
	text := strings.Join(lines[start:end+1], "\n")
	const open = "<!-- doccheck"
	i := strings.Index(text, open)
	if i < 0 || strings.TrimSpace(text[:i]) != "" {
		return "", 0
	}
	text = strings.TrimSuffix(strings.TrimRight(text[i+len(open):], " \t"), "-->")
	line := start + 1 // 1-based line of the comment's first line
	if nl := strings.Index(text, "\n"); nl >= 0 && strings.TrimSpace(text[:nl]) == "" {
		text, line = text[nl+1:], line+1
	} else {
		text = strings.TrimLeft(text, " \t")
	}
	return strings.TrimRight(text, " \t\n") + "\n", line
}

// hasPackageClause reports whether code's first token is "package".
func hasPackageClause(code string) bool {
	var s scanner.Scanner
	fset := token.NewFileSet()
	s.Init(fset.AddFile("", -1, len(code)), []byte(code), nil, 0)
	_, tok, _ := s.Scan()
	return tok == token.PACKAGE
}

// unit is a block made into a Go file.
type unit struct {
	block    *block
	src      string    // the file as type-checked
	file     *ast.File // nil when it does not parse
	parseErr []string
	imports  []string // import paths, for the export data
}

// unit makes b into a file and parses it.
func (b *block) unit(fset *token.FileSet) *unit {
	u := &unit{block: b}
	if b.whole {
		u.src = lineDirective(b.file, b.line) + b.code
	} else {
		u.src = b.wrap(nil)
		// A first parse finds the package names the fragment uses; the
		// second adds their imports.
		f, _ := parser.ParseFile(token.NewFileSet(), wrapperName, u.src, parser.ParseComments)
		if f != nil {
			var names []string
			for _, id := range f.Unresolved {
				if _, ok := autoImports[id.Name]; ok && !slices.Contains(names, id.Name) {
					names = append(names, id.Name)
				}
			}
			u.src = b.wrap(names)
		}
	}
	f, err := parser.ParseFile(fset, wrapperName, u.src, parser.ParseComments|parser.AllErrors)
	if err != nil {
		u.parseErr = errorLines(err, b.file)
	}
	u.file = f
	if f != nil {
		for _, is := range f.Imports {
			if p := strings.Trim(is.Path.Value, "\"`"); p != "" {
				u.imports = append(u.imports, p)
			}
		}
	}
	return u
}

// errorLines turns a parse error into one line per error. Errors in the
// block itself come first; the wrapper's, which follow from them (an
// unclosed bracket...), only when there are no others.
func errorLines(err error, file string) []string {
	var list scanner.ErrorList
	if !errors.As(err, &list) {
		return []string{err.Error()}
	}
	var mine, wrapper []string
	for _, e := range list {
		if e.Pos.Filename == wrapperName {
			wrapper = append(wrapper, e.Error())
		} else {
			mine = append(mine, e.Error())
		}
	}
	if len(mine) > 0 {
		return mine
	}
	return wrapper
}

// check type-checks the unit and returns its errors as "file:line:col: msg".
func (u *unit) check(fset *token.FileSet, imp types.Importer) []string {
	if u.parseErr != nil {
		return u.parseErr
	}
	var errs []string
	conf := types.Config{
		Importer: imp,
		Error: func(err error) {
			te, ok := err.(types.Error)
			if !ok {
				errs = append(errs, err.Error())
				return
			}
			pos := fset.Position(te.Pos)
			if !u.block.whole {
				// Fragments show variables without using them; and the
				// wrapper's own imports may go unused.
				if te.Soft && strings.Contains(te.Msg, "declared and not used") {
					return
				}
				if strings.Contains(te.Msg, "imported and not used") && pos.Filename == wrapperName {
					return
				}
			}
			errs = append(errs, fmt.Sprintf("%s: %s", pos, te.Msg))
		},
	}
	_, _ = conf.Check("snippet", fset, []*ast.File{u.file}, nil)
	return errs
}

// lineDirective returns a //line directive that makes the next line line
// of file. A relative file name is taken relative to the directory of the
// wrapped file, whose name (wrapperName) has none: errors name file as the
// module root sees it.
func lineDirective(file string, line int) string {
	return fmt.Sprintf("//line %s:%d:1\n", file, line)
}

// wrap returns the fragment as a file, importing the given package names
// besides those of the givens and those the block imports itself.
func (b *block) wrap(names []string) string {
	var imports, decls, body strings.Builder
	explicit := map[string]bool{}
	for _, part := range []struct {
		code string
		line int
	}{{b.hidden, b.hiddenLine}, {b.code, b.line}} {
		if part.code == "" {
			continue
		}
		for _, c := range chunks(part.code) {
			text := lineDirective(b.file, part.line+c.line) + c.text
			switch c.kind {
			case chunkImport:
				imports.WriteString(text)
				for _, n := range importedNames(c.text) {
					explicit[n] = true
				}
			case chunkDecl:
				decls.WriteString(text)
			default:
				body.WriteString(text)
			}
		}
	}
	want := append(slices.Clone(givenImports), names...)
	sort.Strings(want)
	want = slices.Compact(want)
	var src strings.Builder
	src.WriteString("package snippet\n\nimport (\n")
	for _, n := range want {
		if !explicit[n] {
			fmt.Fprintf(&src, "\t%s %q\n", n, autoImports[n])
		}
	}
	src.WriteString(")\n")
	src.WriteString(imports.String())
	src.WriteString("//line " + wrapperName + ":1:1\n" + givens)
	src.WriteString(decls.String())
	// The body's function returns an error, so that a fragment may say
	// `if err != nil { return err }` as a reader's code would.
	src.WriteString("//line " + wrapperName + ":1:1\nfunc _() error {\n")
	src.WriteString(body.String())
	src.WriteString("//line " + wrapperName + ":1:1\nreturn nil\n}\n")
	return src.String()
}

// importedNames returns the names an import declaration binds: its
// explicit names, else the last element of each path (a path ending in a
// major version, /v2, binds the element before it).
func importedNames(decl string) []string {
	f, err := parser.ParseFile(token.NewFileSet(), "", "package p\n"+decl, parser.ImportsOnly)
	if err != nil {
		return nil
	}
	var names []string
	for _, is := range f.Imports {
		if is.Name != nil {
			names = append(names, is.Name.Name)
			continue
		}
		parts := strings.Split(strings.Trim(is.Path.Value, "\""), "/")
		n := parts[len(parts)-1]
		if len(parts) > 1 && len(n) > 1 && n[0] == 'v' && strings.Trim(n[1:], "0123456789") == "" {
			n = parts[len(parts)-2]
		}
		names = append(names, n)
	}
	return names
}

// chunk kinds: where a chunk of a fragment goes in the wrapped file.
const (
	chunkStmt   = iota // the function body
	chunkDecl          // package level
	chunkImport        // the import section
)

// chunk is a run of lines of a fragment that starts at the outermost level.
type chunk struct {
	kind int
	line int // offset of its first line in the fragment (0-based)
	text string
}

// chunks splits a fragment at the lines that start at the outermost level
// (no open bracket before them) and says where each run of lines goes:
// func declarations (with a name, or a receiver and a name), type
// declarations and imports to package level, anything else to the body.
// Consecutive lines of the same kind stay together.
func chunks(code string) []chunk {
	lines := strings.SplitAfter(code, "\n")
	// The bracket depth at the start of each line and the tokens that
	// start each line, from the scanner, so strings and comments with
	// brackets in them do not count.
	type tok struct {
		tok token.Token
		lit string
	}
	depthAt := make([]int, len(lines)+1)
	lineToks := make([][]tok, len(lines)+1)
	seen := make([]bool, len(lines)+1)
	fset := token.NewFileSet()
	file := fset.AddFile("", -1, len(code))
	var s scanner.Scanner
	s.Init(file, []byte(code), nil, scanner.ScanComments)
	depth := 0
	for {
		pos, t, lit := s.Scan()
		if t == token.EOF {
			break
		}
		if t == token.SEMICOLON && lit == "\n" {
			continue
		}
		l := file.Line(pos) - 1
		if l < len(lines) {
			if !seen[l] {
				seen[l] = true
				depthAt[l] = depth
			}
			if len(lineToks[l]) < 8 {
				lineToks[l] = append(lineToks[l], tok{t, lit})
			}
		}
		switch t {
		case token.LPAREN, token.LBRACK, token.LBRACE:
			depth++
		case token.RPAREN, token.RBRACK, token.RBRACE:
			depth--
		}
	}
	kindOf := func(l int) (int, bool) {
		if !seen[l] || depthAt[l] != 0 || lineToks[l][0].tok == token.COMMENT {
			return 0, false // continues the chunk before
		}
		ts := lineToks[l]
		switch ts[0].tok {
		case token.IMPORT:
			return chunkImport, true
		case token.TYPE:
			return chunkDecl, true
		case token.FUNC:
			if len(ts) > 1 && ts[1].tok == token.IDENT {
				return chunkDecl, true // func Name(
			}
			// func (recv T) Name( is a method; func(...) is a literal.
			d := 0
			for i := 1; i < len(ts); i++ {
				switch ts[i].tok {
				case token.LPAREN:
					d++
				case token.RPAREN:
					d--
					if d == 0 {
						if i+1 < len(ts) && ts[i+1].tok == token.IDENT {
							return chunkDecl, true
						}
						return chunkStmt, true
					}
				}
			}
		}
		return chunkStmt, true
	}
	var out []chunk
	for l, text := range lines {
		if text == "" {
			continue
		}
		kind, starts := kindOf(l)
		if len(out) == 0 || (starts && kind != out[len(out)-1].kind) ||
			(starts && kind != chunkStmt) {
			if !starts {
				kind = chunkStmt
			}
			out = append(out, chunk{kind: kind, line: l})
		}
		out[len(out)-1].text += text
	}
	for i := range out {
		if !strings.HasSuffix(out[i].text, "\n") {
			out[i].text += "\n"
		}
	}
	return out
}

// exportData runs `go list -export -deps` on the import paths in the
// module and returns each package's export data file. It needs no
// network: modules come from the module cache (GOPROXY=off), and only
// the module's go.mod counts (GOWORK=off).
func exportData(t *testing.T, root string, paths map[string]bool) map[string]string {
	t.Helper()
	args := []string{"list", "-e", "-export", "-deps", "-json=ImportPath,Export,Error"}
	for p := range paths {
		args = append(args, p)
	}
	sort.Strings(args[5:])
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=readonly", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	exports := map[string]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath string
			Export     string
			Error      *struct{ Err string }
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Error != nil {
			t.Logf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
		exports[p.ImportPath] = p.Export
	}
	return exports
}
