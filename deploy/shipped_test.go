package deploy_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// shipped is every deployment file, the tests that check it and the tool
// those tests run on it. A test named "TestX" is in this package; one named
// "dir.TestX" is in the package at dir, relative to the module root. tool
// is a program's name, or a Go function given as pkg.Func, that one of the
// tests calls; "" when the file is only compared with the tested files.
// README.md describes each file and check in words.
var shipped = []struct {
	path  string
	tests []string
	tool  string
}{
	{"Dockerfile", []string{"TestClusterScript", "TestUntestedFilesAgree"}, "go"},
	{"cluster/run.sh", []string{"TestClusterScriptShellcheck", "TestClusterScript"}, "shellcheck"},
	{"compose/docker-compose.yml", []string{"TestComposeConfig", "TestUntestedFilesAgree"}, "docker-compose"},
	{"compose/example.env", []string{"TestComposeConfig"}, "docker-compose"},
	{"compose/mariadb-grants.sql", nil, ""}, // not run: no container engine
	{"haproxy/haproxy.cfg", []string{"TestHAProxyConfigCheck", "TestHAProxyBalancesDrainsAndRetries"}, "haproxy"},
	{"k8s/keda-nats-jetstream.yaml", []string{"TestKEDAScaledObjects"}, "yaml.NewDecoder"},
	{"k8s/keda-prometheus.yaml", []string{"TestKEDAScaledObjects"}, "yaml.NewDecoder"},
	{"k8s/nats-values.yaml", []string{"TestUntestedFilesAgree", "TestKEDAScaledObjects"}, ""},
	{"k8s/web.yaml", []string{"TestUntestedFilesAgree"}, ""},
	{"k8s/worker.yaml", []string{"TestUntestedFilesAgree", "TestKEDAScaledObjects"}, "yaml.NewDecoder"},
	{"k8s/workers-per-queue.yaml", []string{"TestKEDAScaledObjects"}, "yaml.NewDecoder"},
	{"mariadb/README.md", nil, ""}, // documentation
	{"mariadb/primary.cnf", []string{"internal/mariadbtest.TestPair"}, "mariadbd"},
	{"mariadb/replica.cnf", []string{"internal/mariadbtest.TestPair"}, "mariadbd"},
	{"mariadb/setup-primary.sql", []string{"internal/mariadbtest.TestPair", "TestClusterScript"}, "mariadbd"},
	{"mariadb/setup-replication.sql", []string{"internal/mariadbtest.TestPair", "TestClusterScript"}, "mariadbd"},
	{"nats/n1.conf", []string{"TestNATSConfigsParse", "TestNATSClusterFromConfigs"}, "server.ProcessConfigFile"},
	{"nats/n2.conf", []string{"TestNATSConfigsParse", "TestNATSClusterFromConfigs"}, "server.ProcessConfigFile"},
	{"nats/n3.conf", []string{"TestNATSConfigsParse", "TestNATSClusterFromConfigs"}, "server.ProcessConfigFile"},
	{"nginx/jetfleet.conf", []string{"TestNginxConfigCheck", "TestNginxFailsOver"}, "nginx"},
	{"prometheus/alerts.yml", []string{"TestPrometheusRules"}, "promtool"},
	{"prometheus/alerts_test.yml", []string{"TestPrometheusRules"}, "promtool"},
	{"prometheus/prometheus.yml", []string{"TestPrometheusRules"}, "promtool"},
	{"supervisor/jetfleet-worker.conf", []string{"TestSupervisorConfig"}, "supervisord"},
	{"systemd/jetfleet-nats@.service", []string{"TestSystemdUnitsVerify", "TestSystemdUnitsStopInTime"}, "systemd-analyze"},
	{"systemd/jetfleet-web.service", []string{"TestSystemdUnitsVerify", "TestSystemdUnitsStopInTime"}, "systemd-analyze"},
	{"systemd/jetfleet-worker@.service", []string{"TestSystemdUnitsVerify", "TestSystemdUnitsStopInTime"}, "systemd-analyze"},
	{"systemd/jetfleet.env.example", []string{"TestEnvExample"}, "sh"},
}

// Every file under deploy/ is in the table above and in README.md, and
// every file they name exists.
func TestEveryFileListed(t *testing.T) {
	t.Parallel()
	var found []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(path, "_test.go") || path == "doc.go" || path == "README.md" {
			return nil
		}
		found = append(found, filepath.ToSlash(path))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	readme := readFile(t, "README.md")
	var listed []string
	for _, f := range shipped {
		listed = append(listed, f.path)
		if _, err := os.Stat(f.path); err != nil {
			t.Errorf("listed but missing: %v", err)
		}
		if !strings.Contains(readme, "`"+f.path+"`") {
			t.Errorf("README.md does not mention `%s`", f.path)
		}
	}
	for _, f := range found {
		if !slices.Contains(listed, f) {
			t.Errorf("%s is not in the table of shipped files (shipped_test.go) and README.md", f)
		}
	}
}

// Every check the table names exists and does what the table says: each
// test function is there; each test of this package reaches the file's
// path (in its own code, in the package-level code it uses, or in a shipped
// script it runs); and one of the file's tests reaches the tool. A check
// that is deleted, renamed or stops reading its file fails here.
func TestEveryNamedCheckExists(t *testing.T) {
	t.Parallel()
	pkgs := map[string]*sourcePkg{}
	load := func(dir string, testsOnly bool) *sourcePkg {
		if p := pkgs[dir]; p != nil {
			return p
		}
		p := parseSourcePkg(t, dir, testsOnly)
		pkgs[dir] = p
		return p
	}
	for _, f := range shipped {
		usesTool := f.tool == ""
		for _, name := range f.tests {
			dir, fn := ".", name
			if i := strings.LastIndex(name, "."); i >= 0 {
				dir, fn = filepath.Join("..", name[:i]), name[i+1:]
			}
			p := load(dir, dir == ".")
			if !p.isTest(fn) {
				t.Errorf("%s: check %s does not exist (no func %s(t *testing.T) in %s)", f.path, name, fn, dir)
				continue
			}
			uses := p.reachable(fn)
			if dir == "." && !uses.mentions(f.path) {
				t.Errorf("%s: %s never names the file, in its code or in a script it runs", f.path, name)
			}
			usesTool = usesTool || uses.has(f.tool)
		}
		if !usesTool {
			t.Errorf("%s: none of %v runs %s", f.path, f.tests, f.tool)
		}
	}
}

// sourcePkg is the parsed Go source of one package directory.
type sourcePkg struct {
	dir   string
	decls map[string][]ast.Node // package-level funcs, methods, consts and vars by name
	tests map[string]bool
}

// parseSourcePkg parses the .go files of dir (only the _test.go files when
// testsOnly), leaving out this file, whose table would name every path.
func parseSourcePkg(t *testing.T, dir string, testsOnly bool) *sourcePkg {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	p := &sourcePkg{dir: dir, decls: map[string][]ast.Node{}, tests: map[string]bool{}}
	fset := token.NewFileSet()
	for _, path := range files {
		if filepath.Base(path) == "shipped_test.go" && dir == "." || testsOnly && !strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				p.decls[d.Name.Name] = append(p.decls[d.Name.Name], d)
				if d.Recv == nil && strings.HasPrefix(d.Name.Name, "Test") && strings.HasSuffix(path, "_test.go") && takesT(d) {
					p.tests[d.Name.Name] = true
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					if vs, ok := s.(*ast.ValueSpec); ok {
						for _, n := range vs.Names {
							p.decls[n.Name] = append(p.decls[n.Name], vs)
						}
					}
				}
			}
		}
	}
	return p
}

// takesT reports whether fn has the signature of a test: one *testing.T.
func takesT(fn *ast.FuncDecl) bool {
	ps := fn.Type.Params.List
	if len(ps) != 1 || fn.Type.Results != nil {
		return false
	}
	star, ok := ps[0].Type.(*ast.StarExpr)
	if !ok {
		return false
	}
	sel, ok := star.X.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "T" && isIdent(sel.X, "testing")
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

func (p *sourcePkg) isTest(name string) bool { return p.tests[name] }

// reachable collects the string literals and the qualified calls (pkg.Func)
// of the test fn and of every package-level declaration it uses, directly
// or through others. A method is followed by its name alone: the closure
// may hold more than the test runs, never less.
func (p *sourcePkg) reachable(fn string) uses {
	u := uses{strings: map[string]bool{}, calls: map[string]bool{}}
	seen := map[ast.Node]bool{}
	var visit func(n ast.Node)
	visit = func(n ast.Node) {
		if seen[n] {
			return
		}
		seen[n] = true
		ast.Inspect(n, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if n.Kind == token.STRING {
					if s, err := strconv.Unquote(n.Value); err == nil {
						u.strings[s] = true
					}
				}
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok {
					u.calls[x.Name+"."+n.Sel.Name] = true
				}
			case *ast.Ident:
				for _, d := range p.decls[n.Name] {
					visit(d)
				}
			}
			return true
		})
	}
	for _, d := range p.decls[fn] {
		visit(d)
	}
	// A shipped script the test runs is part of the check.
	for s := range u.strings {
		if strings.HasSuffix(s, ".sh") && p.dir == "." {
			if b, err := os.ReadFile(s); err == nil {
				u.scripts = append(u.scripts, string(b))
			}
		}
	}
	return u
}

// uses is what a test reaches.
type uses struct {
	strings map[string]bool
	calls   map[string]bool
	scripts []string
}

// has reports whether tool is one of the strings or qualified calls.
func (u uses) has(tool string) bool { return u.strings[tool] || u.calls[tool] }

// mentions reports whether path is in one of the strings or scripts.
func (u uses) mentions(path string) bool {
	for s := range u.strings {
		if strings.Contains(s, path) {
			return true
		}
	}
	for _, s := range u.scripts {
		if strings.Contains(s, path) {
			return true
		}
	}
	return false
}
