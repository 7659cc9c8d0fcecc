package front

import (
	"slices"
	"testing"
)

// TestSplitWords: what exec = "args" makes of a command line.
func TestSplitWords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{``, nil},
		{`  a   b  `, []string{"a", "b"}},
		{`a "b c"`, []string{"a", "b c"}},
		{`'it''s' "" ''`, []string{"its", "", ""}},
		{`"a \"q\" \$x \\ \n" 'x\y'`, []string{`a "q" $x \ \n`, `x\y`}},
		{`a\ b c\"d`, []string{"a b", `c"d`}},
		{"-c 'select 1;'\tservice=prod", []string{"-c", "select 1;", "service=prod"}},
		{`a#b ~x~ x=~y`, nil}, // "~x~" starts a word with '~'
		{`a#b x~ x=~y`, []string{"a#b", "x~", "x=~y"}},
		{"a\\\nb", []string{"ab"}},
	} {
		got, err := splitWords(tc.in)
		if tc.want == nil && tc.in != "" {
			if err == nil {
				t.Errorf("%q: %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q %v, want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{`a | b`, `a; b`, `a && b`, `a > f`, `$(id)`, "`id`", `"$HOME"`, "\"`id`\"", `*.txt`, `a?`, `[ab]`, `#c`, `~/x`, `'open`, `"open`, `end\`, `(x)`} {
		if got, err := splitWords(in); err == nil {
			t.Errorf("%q: %q, want an error", in, got)
		}
	}
}

// TestTargetProcess: a command target's process gets the terminal type
// and the target's environment, its last variable last (the target
// package bastion's TestFrontTargetConfigErrors parses), and runs as the
// bastion's own user in its own directory when the target sets neither.
func TestTargetProcess(t *testing.T) {
	tc := Target{Name: "box", Command: []string{"/bin/sh"}, Exec: ExecArgs, Env: []string{"B=from-env", "A=x=y", "C="}}
	if p := tc.process("xterm"); !slices.Contains(p.env, "TERM=xterm") || p.env[len(p.env)-1] != "C=" || p.dir != "" || p.cred != nil {
		t.Fatalf("process: %+v", p)
	}
}
