package termtext

import "strings"

// OneLine is s as one line of text to keep (in a journal attribute, a log
// line): control characters dropped (C0, DEL and C1), line breaks and tabs
// become spaces, the ends trimmed. Unlike [Line], which shows what it
// replaces, it is for text whose readers pass it through [Line] when they
// print it.
func OneLine(s string) string {
	var b strings.Builder
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case r < ' ' || r == 0x7f || r >= 0x80 && r < 0xa0:
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// CapRunes cuts s to at most n runes.
func CapRunes(s string, n int) string {
	if out := []rune(s); len(out) > n {
		return string(out[:n])
	}
	return s
}
