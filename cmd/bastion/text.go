package main

// Text from outside the process on the operator's terminal.
//
// Identity subjects and claims, logins, target names, commands, reasons,
// comments, ticket numbers, a target's output and a server's messages are
// chosen by someone other than the operator reading them. Printed as they
// are, an escape sequence in one of them clears the screen, retitles the
// window or recolours what follows, and a line break starts a row that no
// record holds. Human-readable output therefore passes every such field
// through [termText]; --json output is exact JSON, whose encoder already
// escapes control characters, and is never passed through it.

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// termText returns s as one line that is safe to print on a terminal.
// Ordinary text, accents, CJK and emoji included, is kept as it is; what
// could move the cursor, change the terminal's state or the order in which
// a row reads is shown as a visible Go-style escape instead:
//
//   - C0 controls, DEL and C1 controls (U+0080 to U+009F, which some
//     terminals take as CSI, OSC and the like): `\n`, `\r`, `\t` and `\x1b`,
//     `\x7f`, `\u009b`. A field is one line: a line break in it never
//     starts a new row;
//   - bidirectional controls (U+061C, U+200E, U+200F, U+202A to U+202E,
//     U+2066 to U+2069): an override or isolate in one field reorders how
//     the rest of the row reads, so `\u202e` and the like;
//   - the line and paragraph separators U+2028 and U+2029;
//   - bytes that are not UTF-8: `\xff`.
//
// A backslash is kept as it is, so that commands stay readable; the escaped
// form and the same characters typed literally look alike, and --json tells
// them apart.
func termText(s string) string {
	i := 0
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if termUnsafe(r, n) {
			break
		}
		i += n
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case !termUnsafe(r, n):
			b.WriteString(s[i : i+n])
		case r == utf8.RuneError:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += n
	}
	return b.String()
}

// termUnsafe reports whether the rune r, n bytes long in its string, is one
// that [termText] escapes. A RuneError of length 1 is a byte that is not
// UTF-8; one of length 3 is U+FFFD itself, which is harmless.
func termUnsafe(r rune, n int) bool {
	switch {
	case r == utf8.RuneError:
		return n == 1
	case r < ' ', r == 0x7f, r >= 0x80 && r < 0xa0:
		return true
	case r == '\u2028', r == '\u2029':
		return true
	}
	return r >= 0x600 && unicode.Is(unicode.Bidi_Control, r)
}

// termLines is [termText] for text that may hold several lines on purpose,
// such as an error that lists problems: each line is made safe, and the
// line breaks between them are kept.
func termLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = termText(l)
	}
	return strings.Join(lines, "\n")
}
