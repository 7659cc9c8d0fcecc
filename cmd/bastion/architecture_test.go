package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const (
	architectureFile = "../../docs/architecture.md"
	modulePath       = "github.com/bastionhq/bastion"
)

// architectureRow is a row of the map's package table:
// "| `PATH` | holds | may import |".
var architectureRow = regexp.MustCompile("^\\| `([a-z0-9/]+)` \\|[^|]*\\|([^|]*)\\|")

// backticked is a package named in a row's "may import" column.
var backticked = regexp.MustCompile("`([a-z0-9/]+)`")

// allowed is what a row's "may import" column allows: "none", "any
// non-test package", "everything below but `cmd`", or a list of packages.
type allowed struct {
	any    bool     // any package of the module
	except []string // but those under these
	only   []string // else these alone
}

func parseAllowed(col string) allowed {
	col = strings.TrimSpace(col)
	switch {
	case col == "none":
		return allowed{}
	case strings.HasPrefix(col, "any "), strings.HasPrefix(col, "everything "):
		a := allowed{any: true}
		if _, but, ok := strings.Cut(col, " but "); ok {
			for _, m := range backticked.FindAllStringSubmatch(but, -1) {
				a.except = append(a.except, m[1])
			}
		}
		return a
	}
	var a allowed
	for _, m := range backticked.FindAllStringSubmatch(col, -1) {
		a.only = append(a.only, m[1])
	}
	return a
}

func (a allowed) permits(pkg string) bool {
	if !a.any {
		return slices.Contains(a.only, pkg)
	}
	for _, e := range a.except {
		if pkg == e || strings.HasPrefix(pkg, e+"/") {
			return false
		}
	}
	return true
}

// architecturePackages returns the packages of the map's table, by path
// inside the module, each with what it may import, failing the test on a
// row that names one twice.
func architecturePackages(t *testing.T) map[string]allowed {
	t.Helper()
	f, err := os.Open(architectureFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]allowed{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := architectureRow.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if _, dup := out[m[1]]; dup {
			t.Errorf("%s names %s twice", architectureFile, m[1])
		}
		out[m[1]] = parseAllowed(m[2])
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no package table", architectureFile)
	}
	return out
}

// modulePackages returns the module's packages as "go list ./..." prints
// them, by path inside the module, each with the module's packages it
// imports (tests aside).
func modulePackages(t *testing.T) map[string][]string {
	t.Helper()
	goBin := "go"
	if root := os.Getenv("GOROOT"); root != "" {
		goBin = filepath.Join(root, "bin", "go")
	}
	if _, err := exec.LookPath(goBin); err != nil {
		t.Fatalf("go list needs the go command: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...")
	cmd.Dir = "../.."
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	inModule := func(p string) (string, bool) {
		if p == modulePath {
			return ".", true
		}
		rel, ok := strings.CutPrefix(p, modulePath+"/")
		return rel, ok
	}
	out := map[string][]string{}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		pkg, ok := inModule(f[0])
		if !ok {
			t.Fatalf("go list ./... printed %q, outside the module", f[0])
		}
		out[pkg] = []string{}
		for _, imp := range f[1:] {
			if rel, ok := inModule(imp); ok {
				out[pkg] = append(out[pkg], rel)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("go list ./... printed no package")
	}
	return out
}

// isTestHelper reports whether pkg is one of the packages that help
// tests (recordertest, sshdtest…).
func isTestHelper(pkg string) bool { return strings.HasSuffix(filepath.Base(pkg), "test") }

// TestArchitectureMap checks docs/architecture.md against the module:
// every package "go list ./..." prints has a row in the map, every row
// names a package of the module, each package imports only what its row
// allows, and no package but a test helper imports a test helper.
func TestArchitectureMap(t *testing.T) {
	documented := architecturePackages(t)
	listed := modulePackages(t)
	for pkg, imports := range listed {
		may, ok := documented[pkg]
		if !ok {
			t.Errorf("%s is not in %s: add a row for it", pkg, architectureFile)
			continue
		}
		for _, imp := range imports {
			if !may.permits(imp) {
				t.Errorf("%s imports %s, which its row in %s does not allow", pkg, imp, architectureFile)
			}
		}
	}
	for pkg := range documented {
		if _, ok := listed[pkg]; !ok {
			t.Errorf("%s names %s, which go list ./... does not print", architectureFile, pkg)
		}
	}
	for pkg, imports := range listed {
		if isTestHelper(pkg) {
			continue
		}
		for _, imp := range imports {
			if isTestHelper(imp) {
				t.Errorf("%s imports %s, a package for tests", pkg, imp)
			}
		}
	}
}
