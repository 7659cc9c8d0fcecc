package policy

import (
	"errors"
	"slices"
	"testing"
)

func TestParseCommand(t *testing.T) {
	for _, c := range []struct {
		cmd  string
		want [][]string // nil: not literal
	}{
		{"ls -l /srv", [][]string{{"ls", "-l", "/srv"}}},
		{`echo 'a b' "c d" e\ f`, [][]string{{"echo", "a b", "c d", "e f"}}},
		{`r''m "-r"f`, [][]string{{"rm", "-rf"}}},
		{`echo "a\"b\\c\$d\q"`, [][]string{{"echo", `a"b\c$d\q`}}},
		{"a | b && c || d; e\nf", [][]string{{"a"}, {"b"}, {"c"}, {"d"}, {"e"}, {"f"}}},
		{"a 2>&1 | b >&2 3>&-", [][]string{{"a"}, {"b"}}},
		{"git log HEAD~1 --format=%h", [][]string{{"git", "log", "HEAD~1", "--format=%h"}}},
		{"find . -name x -exec rm {} \\;", [][]string{{"find", ".", "-name", "x", "-exec", "rm", "{}", ";"}}},
		{"echo '*' \\?", [][]string{{"echo", "*", "?"}}},
		{"ls # a comment", [][]string{{"ls"}}},
		{"ls &", [][]string{{"ls"}}},
		{"", nil},
		{"   ", nil},
		{"echo $HOME", nil},
		{"echo ${HOME}", nil},
		{`echo "$HOME"`, nil},
		{"echo $(id)", nil},
		{"echo `id`", nil},
		{"echo $((1+1))", nil},
		{"diff <(a) <(b)", nil},
		{"cat <<EOF\nx\nEOF", nil},
		{"cat <<< x", nil},
		{"echo x > f", nil},
		{"echo x >> f", nil},
		{"cat < f", nil},
		{"echo x >&f", nil},
		{"echo x &> f", nil},
		{"(ls)", nil},
		{"{ ls; }", nil},
		{"f() { ls; }", nil},
		{"if true; then ls; fi", nil},
		{"for i in a; do ls; done", nil},
		{"X=1 ls", nil},
		{"export X=1", nil},
		{"ls *.go", nil},
		{"ls file?", nil},
		{"ls [ab]", nil},
		{"echo {a,b}", nil},
		{"echo {1..3}", nil},
		{"cat ~/.ssh/id", nil},
		{"ls --dir=~", nil},
		{"echo $'a\\nb'", nil},
		{"echo 'unterminated", nil},
		{"[[ -f x ]]", nil},
		{"echo a\x00b", nil},
	} {
		got, err := ParseCommand(c.cmd)
		if c.want == nil {
			if err == nil || !errors.Is(err, ErrNotLiteral) {
				t.Errorf("%q: got %q, %v; want an ErrNotLiteral", c.cmd, got, err)
			}
			continue
		}
		if err != nil || !slices.EqualFunc(got, c.want, slices.Equal) {
			t.Errorf("%q: got %q, %v; want %q", c.cmd, got, err, c.want)
		}
	}
}

// The common command lines skip the shell parser, with the same result
// (FuzzCommandPattern compares the two on everything).
func TestPlainCommands(t *testing.T) {
	for cmd, want := range map[string][][]string{
		"ls -l /srv":                      {{"ls", "-l", "/srv"}},
		"journalctl -u x | grep -i error": {{"journalctl", "-u", "x"}, {"grep", "-i", "error"}},
		"a && b || c; d":                  {{"a"}, {"b"}, {"c"}, {"d"}},
		"psql -c 'DROP TABLE x; $y' ''":   {{"psql", "-c", "DROP TABLE x; $y", ""}},
		"a'b c'd\te":                      {{"ab cd", "e"}},
	} {
		got, ok := plainCommands(cmd)
		if !ok || !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("%q: %q %v, want %q", cmd, got, ok, want)
		}
	}
	for _, cmd := range []string{"", "a;", "a & b", "a |& b", "if x", "X=1 a", "a 'b", "a\nb", "a \\b", "echo $x", "a;;b", "a ||| b"} {
		if got, ok := plainCommands(cmd); ok {
			t.Errorf("%q took the fast path: %q", cmd, got)
		}
	}
}

func TestCommandPatterns(t *testing.T) {
	for _, c := range []struct {
		pattern string
		argv    []string
		match   bool
	}{
		{"systemctl status *", []string{"systemctl", "status", "nginx"}, true},
		{"systemctl status *", []string{"systemctl", "status", "a/b c"}, true},
		{"systemctl status *", []string{"systemctl", "status"}, false},
		{"systemctl status *", []string{"systemctl", "status", "a", "b"}, false},
		{"journalctl -u * **", []string{"journalctl", "-u", "x"}, true},
		{"journalctl -u * **", []string{"journalctl", "-u", "x", "-n", "5"}, true},
		{"rm ** -rf **", []string{"rm", "-rf", "/"}, true},
		{"rm ** -rf **", []string{"rm", "-v", "-i", "-rf", "/a", "/b"}, true},
		{"rm ** -rf **", []string{"rm", "-r", "-f", "/"}, false},
		{"rm ** -rf **", []string{"rm", "x-rf"}, false},
		{"**", nil, true},
		{"**", []string{"a", "b"}, true},
		{"** x ** y **", []string{"a", "x", "b", "y"}, true},
		{"** x ** y **", []string{"y", "x"}, false},
		{"ls ?", []string{"ls", "é"}, true},
		{"ls [a-c]*", []string{"ls", "beta"}, true},
		{"ls [!a-c]*", []string{"ls", "beta"}, false},
		{`ls '*'`, []string{"ls", "*"}, true},
		{`ls '*'`, []string{"ls", "x"}, false},
		{`ls \*`, []string{"ls", "x"}, false},
		{`ls "a b"`, []string{"ls", "a b"}, true},
		{`psql ** -c 're:(?i).*drop\s+table.*' **`, []string{"psql", "-U", "x", "-c", "DROP  TABLE users", "db"}, true},
		{`psql ** -c 're:(?i).*drop\s+table.*' **`, []string{"psql", "-c", "select 1\n; drop table x"}, true},
		{`psql ** -c 're:(?i).*drop\s+table.*' **`, []string{"psql", "-c", "select 1"}, false},
		{`x 're:a|b'`, []string{"x", "ab"}, false},
		{`x 're:a|b'`, []string{"x", "b"}, true},
		{`'**'`, []string{"**"}, true},
		{`'**'`, []string{"a", "b"}, false},
	} {
		p, err := compileCommandPattern(c.pattern)
		if err != nil {
			t.Errorf("%s: %v", c.pattern, err)
			continue
		}
		if got := p.match(c.argv); got != c.match {
			t.Errorf("%s on %q: %v, want %v", c.pattern, c.argv, got, c.match)
		}
	}
	for _, bad := range []string{"", "a; b", "a | b", "echo $X", "x > f", "x 're:('", "x [a", `x 're:a)|(b'`, "(x)", "X=1 y", "x 'a"} {
		if _, err := compileCommandPattern(bad); err == nil {
			t.Errorf("pattern %q accepted", bad)
		}
	}
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		pat, s string
		match  bool
	}{
		{"web-*", "web-1", true},
		{"web-*", "web-", true},
		{"web-*", "db-1", false},
		{"*", "", true},
		{"*.example.com", "a.b.example.com", true},
		{"a*b*c", "abxbc", true},
		{"a*b*c", "acb", false},
		{"10.0.0.?", "10.0.0.7", true},
		{"10.0.0.?", "10.0.0.17", false},
		{"[]]", "]", true},
		{"[a-]", "-", true},
		{`\*`, "*", true},
		{`\*`, "x", false},
		{"db-prod", "db-prod", true},
		{"db-prod", "db-prod2", false},
	} {
		g, err := compileGlob(c.pat)
		if err != nil {
			t.Errorf("%s: %v", c.pat, err)
			continue
		}
		if g.match(c.s) != c.match {
			t.Errorf("%q on %q: want %v", c.pat, c.s, c.match)
		}
	}
	for _, bad := range []string{"[", "[a", `a\`, "[z-a]"} {
		if _, err := compileGlob(bad); err == nil {
			t.Errorf("glob %q accepted", bad)
		}
	}
}
