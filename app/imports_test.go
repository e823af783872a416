package app_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/lodestar-cs/lodestar/"

// TestImportGraph keeps the layout of docs/architecture.md: nothing below
// the runner imports it, no service imports another service, the shared kit
// (pkg/) imports no service, and the scoring core imports neither services
// nor NATS or Redis (it does no I/O). Test files count too.
func TestImportGraph(t *testing.T) {
	root := filepath.Join("..")
	type rule struct {
		dir    string                      // a directory below root
		forbid func(from, imp string) bool // from: the file's directory, relative to root
	}
	service := func(path string) string { // "services/scoring/..." -> "scoring"
		if rest, ok := strings.CutPrefix(path, "services/"); ok {
			name, _, _ := strings.Cut(rest, "/")
			return name
		}
		return ""
	}
	runner := func(_, imp string) bool {
		return imp == "app" || strings.HasPrefix(imp, "app/") || strings.HasPrefix(imp, "cmd/")
	}
	rules := []rule{
		{"services", func(from, imp string) bool {
			return runner(from, imp) || (service(imp) != "" && service(imp) != service(from))
		}},
		{"pkg", func(from, imp string) bool { return runner(from, imp) || service(imp) != "" }},
		{"internal/scorecore", func(from, imp string) bool { return runner(from, imp) || service(imp) != "" }},
	}
	var checked int
	for _, r := range rules {
		err := filepath.WalkDir(filepath.Join(root, r.dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, filepath.Dir(path))
			rel = filepath.ToSlash(rel)
			for _, is := range f.Imports {
				p, _ := strconv.Unquote(is.Path.Value)
				imp, ours := strings.CutPrefix(p, module)
				if r.dir == "internal/scorecore" && (strings.HasPrefix(p, "github.com/nats-io/") || strings.HasPrefix(p, "github.com/redis/")) {
					t.Errorf("%s imports %s: the scoring core does no I/O", path, p)
				}
				if ours && r.forbid(rel, imp) {
					t.Errorf("%s imports %s", path, p)
				}
			}
			checked++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 100 {
		t.Fatalf("checked %d files; the walk missed the tree", checked)
	}
}
