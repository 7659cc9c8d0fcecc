package sessions

import (
	"strings"
	"testing"
)

func TestShortCommand(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, in, want string }{
		{"short", "uname -s", "uname -s"},
		{"empty", "", ""},
		{"a script", "echo one\necho two\n", "echo one…"},
		{"leading blank lines", "\n\n  ls -l\n", "ls -l"},
		{"CRLF", "echo one\r\necho two", "echo one…"},
		{"long line", strings.Repeat("x", 70), strings.Repeat("x", 19) + "…"},
		{"exactly the width", strings.Repeat("y", 20), strings.Repeat("y", 20)},
		{"cut at a space", strings.Repeat("z", 18) + "  tail and more", strings.Repeat("z", 18) + "…"},
		{"runes, not bytes", strings.Repeat("é", 25), strings.Repeat("é", 19) + "…"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ShortCommand(tt.in, 20); got != tt.want {
				t.Errorf("ShortCommand(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
