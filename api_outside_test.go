package fparser_test

import (
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// apiUserDir is a program outside the module, its own module, written from
// `go doc` of the root package alone.
const apiUserDir = "examples/apiuser"

// TestOutsideProgramUsesEveryExportedName checks that examples/apiuser, a
// program written from the root package's go doc alone, mentions every
// exported name of the root package (types, functions, constants, variables,
// methods and struct fields, deprecated ones included) and that it compiles
// against the current tree. A name added to the API must be used there too,
// which makes its author read its doc as an outsider would.
func TestOutsideProgramUsesEveryExportedName(t *testing.T) {
	exported := rootExportedNames(t)
	if len(exported) == 0 {
		t.Fatal("found no exported names in the root package")
	}

	qualified, selectors := programNames(t, filepath.Join(apiUserDir, "main.go"))
	var missing []string
	for _, name := range exported {
		if typ, member, ok := strings.Cut(name, "."); ok {
			// A method or field: its selector anywhere in the program will do.
			// (The type itself is checked as a name of its own.)
			if !selectors[member] {
				missing = append(missing, typ+"."+member)
			}
			continue
		}
		if !qualified[name] {
			missing = append(missing, name)
		}
	}
	for _, name := range missing {
		t.Errorf("%s/main.go never uses fparser.%s", apiUserDir, name)
	}
	if len(missing) > 0 {
		t.Logf("%d of %d exported names unused; use them in %s, written from go doc alone", len(missing), len(exported), apiUserDir)
	}

	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("cannot build %s: the go command is not found: %v", apiUserDir, err)
	}
	bin := filepath.Join(t.TempDir(), "apiuser")
	cmd := exec.Command(goCmd, "build", "-o", bin, ".")
	cmd.Dir = apiUserDir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s does not compile against the current tree: %v\n%s", apiUserDir, err, out)
	}

	// It runs, too: a replay of a small capture, with every feature the
	// replay has.
	capture, err := filepath.Abs(filepath.Join("testdata", "http.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	run := exec.Command(bin, "-packets", "3", "-stats", "-v", "-sort", "bytes", capture)
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", apiUserDir, capture, err, out)
	}
	if !strings.Contains(string(out), "flows, by bytes:") {
		t.Errorf("%s %s printed no flows:\n%s", apiUserDir, capture, out)
	}
}

// rootExportedNames lists the exported names of the root package, as go doc
// shows them for this platform: top-level names as "Name", methods and struct
// fields as "Type.Name".
func rootExportedNames(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	seen := map[string]bool{}
	add := func(name string) {
		seen[name] = true
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		if ok, err := build.Default.MatchFile(".", name); err != nil {
			t.Fatal(err)
		} else if !ok {
			continue // excluded by build constraints, as go doc excludes it
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		if f.Name.Name != "fparser" {
			continue
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				if d.Recv == nil || len(d.Recv.List) == 0 {
					add(d.Name.Name)
					continue
				}
				if recv := receiverTypeName(d.Recv.List[0].Type); ast.IsExported(recv) {
					add(recv + "." + d.Name.Name)
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch s := spec.(type) {
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								add(n.Name)
							}
						}
					case *ast.TypeSpec:
						if !s.Name.IsExported() {
							continue
						}
						add(s.Name.Name)
						var members *ast.FieldList
						switch typ := s.Type.(type) {
						case *ast.StructType:
							members = typ.Fields
						case *ast.InterfaceType:
							members = typ.Methods
						}
						if members == nil {
							continue
						}
						for _, field := range members.List {
							names := field.Names
							if len(names) == 0 { // embedded: named after its type
								if n := embeddedName(field.Type); n != nil {
									names = []*ast.Ident{n}
								}
							}
							for _, n := range names {
								if n.IsExported() {
									add(s.Name.Name + "." + n.Name)
								}
							}
						}
					}
				}
			}
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// receiverTypeName is the name of a method's receiver type: T for T, *T,
// T[P] and *T[P].
func receiverTypeName(x ast.Expr) string {
	for {
		switch e := x.(type) {
		case *ast.StarExpr:
			x = e.X
		case *ast.ParenExpr:
			x = e.X
		case *ast.IndexExpr:
			x = e.X
		case *ast.IndexListExpr:
			x = e.X
		case *ast.Ident:
			return e.Name
		default:
			return ""
		}
	}
}

// embeddedName is the field name of an embedded type.
func embeddedName(x ast.Expr) *ast.Ident {
	for {
		switch e := x.(type) {
		case *ast.StarExpr:
			x = e.X
		case *ast.IndexExpr:
			x = e.X
		case *ast.IndexListExpr:
			x = e.X
		case *ast.SelectorExpr:
			return e.Sel
		case *ast.Ident:
			return e
		default:
			return nil
		}
	}
}

// programNames parses the program at path and returns the names it uses of
// the root package (fparser.X) and every selector name it uses (x.Sel, and
// the keys of composite literals, which set fields by name).
func programNames(t *testing.T, path string) (qualified, selectors map[string]bool) {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	const rootPath = "github.com/fparser/fparser"
	pkgName := ""
	for _, imp := range f.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil || p != rootPath {
			continue
		}
		pkgName = "fparser"
		if imp.Name != nil {
			pkgName = imp.Name.Name
		}
	}
	if pkgName == "" || pkgName == "_" || pkgName == "." {
		t.Fatalf("%s does not import %s by name", path, rootPath)
	}
	qualified = map[string]bool{}
	selectors = map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		switch e := n.(type) {
		case *ast.SelectorExpr:
			selectors[e.Sel.Name] = true
			if id, ok := e.X.(*ast.Ident); ok && id.Name == pkgName {
				qualified[e.Sel.Name] = true
			}
		case *ast.CompositeLit:
			for _, elt := range e.Elts {
				if kv, ok := elt.(*ast.KeyValueExpr); ok {
					if id, ok := kv.Key.(*ast.Ident); ok {
						selectors[id.Name] = true
					}
				}
			}
		}
		return true
	})
	return qualified, selectors
}
