package doccheck

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// sample is a markdown page with every kind of block the extractor meets.
const sample = "# Page\n" + // 1
	"\n" + // 2
	"```sh\n" + // 3
	"go run ./cmd/jetfleet up\n" + // 4
	"```\n" + // 5
	"\n" + // 6
	"<!-- doccheck\n" + // 7
	"type Thing struct{}\n" + // 8
	"-->\n" + // 9
	"```go\n" + // 10
	"var t Thing\n" + // 11
	"undefinedName()\n" + // 12
	"```\n" + // 13
	"\n" + // 14
	"- a list item:\n" + // 15
	"\n" + // 16
	"  ```go\n" + // 17
	"  x, err := 1, error(nil); if err != nil { return err } // x unused: fine in a fragment\n" + // 18
	"  ```\n" + // 19
	"\n" + // 20
	"```go\n" + // 21
	"package main\n" + // 22
	"\n" + // 23
	"func main() { x := 1 }\n" + // 24
	"```\n" + // 25
	"\n" + // 26
	"~~~go\n" + // 27
	"type T struct{}\n" + // 28
	"\n" + // 29
	"func (T) Kind() string { return \"t\" }\n" + // 30
	"\n" + // 31
	"func() { bus.JobSubject(\"q\", \"k\") }()\n" + // 32
	"~~~\n" // 33

func TestParseMarkdown(t *testing.T) {
	blocks := parseMarkdown("page.md", sample)
	var got []string
	for _, b := range blocks {
		got = append(got, b.name())
	}
	want := []string{"page.md:11", "page.md:18", "page.md:22", "page.md:28"}
	if !slices.Equal(got, want) {
		t.Fatalf("blocks at %v, want %v", got, want)
	}
	if b := blocks[0]; b.hidden != "type Thing struct{}\n" || b.hiddenLine != 8 {
		t.Errorf("hidden code %q at line %d, want the type at line 8", b.hidden, b.hiddenLine)
	}
	if b := blocks[1]; !strings.HasPrefix(b.code, "x, err := 1") || b.hidden != "" {
		t.Errorf("indented block: code %q, hidden %q", b.code, b.hidden)
	}
	if !blocks[2].whole || blocks[0].whole {
		t.Errorf("whole files: %v %v, want only the block with a package clause", blocks[0].whole, blocks[2].whole)
	}
}

func TestHiddenCodeOnOneLine(t *testing.T) {
	lines := strings.Split("<!-- doccheck var n int -->\n```go\nn++\n```\n", "\n")
	code, line := hiddenCode(lines, 1)
	if code != "var n int\n" || line != 1 {
		t.Errorf("got %q at line %d", code, line)
	}
	lines = strings.Split("<!-- not for doccheck -->\n```go\n", "\n")
	if code, _ := hiddenCode(lines, 1); code != "" {
		t.Errorf("an unrelated comment gave hidden code %q", code)
	}
}

func TestChunks(t *testing.T) {
	code := "type T struct {\n\tA int\n}\n" + // 0-2: decl
		"func (T) Kind() string { return \"t\" }\n" + // 3: decl
		"t := T{}\n" + // 4: stmt
		"f := func() {\n\tfmt.Println(\"}\")\n}\n" + // 5-7: stmt
		"func() {}()\n" + // 8: stmt (a literal)
		"import \"strings\"\n" + // 9: import
		"func helper() {}\n" // 10: decl
	var got []string
	for _, c := range chunks(code) {
		got = append(got, []string{"stmt", "decl", "import"}[c.kind]+"@"+strconv.Itoa(c.line))
	}
	want := []string{"decl@0", "decl@3", "stmt@4", "import@9", "decl@10"}
	if !slices.Equal(got, want) {
		t.Errorf("chunks %v, want %v", got, want)
	}
}

// TestCheckNamesMarkdownLines compiles the sample page: errors must name
// the page's lines, unused variables must pass in fragments only, and the
// hidden code must be compiled with its block.
func TestCheckNamesMarkdownLines(t *testing.T) {
	blocks := parseMarkdown("page.md", sample)
	res := checkBlocks(t, moduleRoot(t), blocks)
	want := [][]string{
		{"page.md:12:1: undefined: undefinedName"},
		nil,
		{"page.md:24:15: declared and not used: x"},
		nil,
	}
	for i, r := range res {
		if !slices.Equal(r.errs, want[i]) {
			t.Errorf("%s: errors %q, want %q\n%s", blocks[i].name(), r.errs, want[i], listing(r.src))
		}
	}
}
