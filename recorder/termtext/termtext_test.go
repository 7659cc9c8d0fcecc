package termtext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLine(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "agent-1@dev", "agent-1@dev"},
		{"accents and CJK", "José Müller 日本語 🙂", "José Müller 日本語 🙂"},
		{"emoji joined", "👩\u200d💻", "👩\u200d💻"},
		{"backslash kept", `grep 'a\|b'`, `grep 'a\|b'`},
		{"replacement character kept", "a\ufffdb", "a\ufffdb"},
		{"clear screen", "x\x1b[2Jy", `x\x1b[2Jy`},
		{"window title", "\x1b]0;title\x07", `\x1b]0;title\x07`},
		{"forged row", "a\n123\tforged", `a\n123\tforged`},
		{"carriage return", "ok\rno", `ok\rno`},
		{"DEL", "a\x7f", `a\x7f`},
		{"NUL", "a\x00b", `a\x00b`},
		{"C1 CSI", "a\u009b2J", `a\u009b2J`},
		{"C1 NEL", "a\u0085b", `a\u0085b`},
		{"bidi override", "evil\u202etxt.exe", `evil\u202etxt.exe`},
		{"bidi isolate", "\u2066x\u2069", `\u2066x\u2069`},
		{"bidi marks", "\u200e\u200f\u061c", `\u200e\u200f\u061c`},
		{"line separator", "a\u2028b\u2029c", `a\u2028b\u2029c`},
		{"invalid UTF-8", "a\xffb\xc3", `a\xffb\xc3`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Line(tt.in)
			if got != tt.want {
				t.Errorf("Line(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if again := Line(got); again != got {
				t.Errorf("Line(%q) = %q: not stable", got, again)
			}
		})
	}
}

func TestLines(t *testing.T) {
	got := Lines("first\x1b[2J\n\tsecond\r\n\u202e")
	if want := "first\\x1b[2J\n\tsecond\\r\n\\u202e"; got != want {
		t.Errorf("Lines = %q, want %q", got, want)
	}
}

// FuzzLine checks that nothing Line returns can drive a terminal or break
// a line, and that it leaves safe text alone.
func FuzzLine(f *testing.F) {
	for _, s := range []string{"", "a\x1b[2J", "\u009b", "\u202e", "\xff\xfe", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Line(s)
		if !utf8.ValidString(out) {
			t.Fatalf("Line(%q) = %q is not UTF-8", s, out)
		}
		for _, r := range out {
			if Unsafe(r, utf8.RuneLen(r)) {
				t.Fatalf("Line(%q) = %q holds %U", s, out, r)
			}
		}
		safe := utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return Unsafe(r, utf8.RuneLen(r)) })
		if safe && out != s {
			t.Fatalf("Line(%q) = %q changed safe text", s, out)
		}
		if lines := Lines(s); strings.Count(lines, "\n") != strings.Count(s, "\n") {
			t.Fatalf("Lines(%q) = %q changed the line count", s, lines)
		}
	})
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"  plain  ":               "plain",
		"two\nlines\tand\rtabs":   "two lines and tabs",
		"esc\x1b[2Jape\x7f\u009b": "esc[2Jape",
		"héllo, 世界":               "héllo, 世界",
	} {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
	if got := CapRunes("héllo", 2); got != "hé" {
		t.Errorf("CapRunes: %q", got)
	}
	if got := CapRunes("hé", 5); got != "hé" {
		t.Errorf("CapRunes of a short string: %q", got)
	}
}
