package doccheck

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

var (
	// link matches an inline markdown link or image: [text](target).
	link = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	// codeSpan matches inline code, whose brackets are not links.
	codeSpan = regexp.MustCompile("`[^`]*`")
	// heading matches an ATX heading.
	heading = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
)

// TestLinks checks every relative link of README.md and docs/*.md: the
// file it names exists in the repository, and its #anchor is a heading of
// that file (GitHub's anchors). Every page of docs/ links back to the
// README.
func TestLinks(t *testing.T) {
	root := moduleRoot(t)
	anchors := map[string]map[string]bool{} // file (slash path from root) → its anchors
	anchorsOf := func(file string) (map[string]bool, error) {
		if a, ok := anchors[file]; ok {
			return a, nil
		}
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(file)))
		if err != nil {
			return nil, err
		}
		anchors[file] = headingAnchors(string(data))
		return anchors[file], nil
	}
	for _, file := range docFiles(t, root) {
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(file)))
		if err != nil {
			t.Fatal(err)
		}
		backToReadme := false
		for n, line := range proseLines(string(data)) {
			if line == "" {
				continue
			}
			for _, m := range link.FindAllStringSubmatch(codeSpan.ReplaceAllString(line, ""), -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				where := fmt.Sprintf("%s:%d: link %q", file, n+1, target)
				p, anchor, _ := strings.Cut(target, "#")
				dest := file
				if p != "" {
					dest = path.Clean(path.Join(path.Dir(file), p))
					if strings.HasPrefix(dest, "../") {
						t.Errorf("%s leads out of the repository", where)
						continue
					}
					if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(dest))); err != nil {
						t.Errorf("%s: no such file or directory %s", where, dest)
						continue
					}
				}
				if dest == "README.md" && file != "README.md" {
					backToReadme = true
				}
				if anchor == "" {
					continue
				}
				if !strings.HasSuffix(dest, ".md") {
					t.Errorf("%s: an anchor into a file that is not markdown", where)
					continue
				}
				a, err := anchorsOf(dest)
				if err != nil {
					t.Errorf("%s: %v", where, err)
				} else if !a[anchor] {
					t.Errorf("%s: %s has no heading with the anchor #%s", where, dest, anchor)
				}
			}
		}
		if strings.HasPrefix(file, "docs/") && !backToReadme {
			t.Errorf("%s has no link back to the README (../README.md)", file)
		}
	}
}

// proseLines returns the lines of a markdown text with the lines of fenced
// code blocks (fences included) blanked, so that line numbers stay right.
func proseLines(text string) []string {
	lines := strings.Split(text, "\n")
	out := make([]string, len(lines))
	var open *fence
	for i, l := range lines {
		f, ok := parseFence(l)
		switch {
		case open == nil && ok:
			open = &f
		case open != nil:
			if ok && f.marker[0] == open.marker[0] && len(f.marker) >= len(open.marker) && f.info == "" {
				open = nil
			}
		default:
			out[i] = l
		}
	}
	return out
}

// headingAnchors returns the anchors GitHub gives the headings of a
// markdown text: a second heading with the same anchor gets "-1", a third
// "-2", and so on.
func headingAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	count := map[string]int{}
	for _, l := range proseLines(text) {
		m := heading.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		s := slug(m[1])
		if n := count[s]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			anchors[s] = true
		}
		count[s]++
	}
	return anchors
}

// slug is GitHub's anchor of a heading: the text as rendered (no code
// ticks, link targets or emphasis marks), lower case, with every character
// but letters, digits, marks, '_' and '-' dropped and spaces made '-'.
func slug(h string) string {
	h = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(h, "$1")
	var sb strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			sb.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsMark(r):
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

func TestSlug(t *testing.T) {
	for h, want := range map[string]string{
		"The wire contract (for any language)":     "the-wire-contract-for-any-language",
		"`jetfleet up`: everything in one process": "jetfleet-up-everything-in-one-process",
		"Durability: the sync policy":              "durability-the-sync-policy",
		"Scale-out and faults (build tag `e2e`)":   "scale-out-and-faults-build-tag-e2e",
		"/metrics":                                 "metrics",
		"Sessions, read model, HTTP":               "sessions-read-model-http",
	} {
		if got := slug(h); got != want {
			t.Errorf("slug(%q) = %q, want %q", h, got, want)
		}
	}
}
