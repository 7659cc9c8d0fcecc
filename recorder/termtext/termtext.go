// Package termtext renders text from outside the process so that a
// terminal shows it and does not act on it.
//
// Identity subjects and claims, logins, target names, commands, reasons,
// comments, ticket numbers, a target's output and a server's messages are
// chosen by someone other than the person reading them. Printed as they
// are, an escape sequence in one of them clears the screen, retitles the
// window or recolours what follows; a line break starts a row that no
// record holds; a bidirectional override makes the rest of a row read in
// another order. [Line] shows such characters as visible escapes instead.
//
// Human-readable output passes every such field through [Line]; JSON
// output does not, as its encoder escapes control characters already and
// it must stay exact.
package termtext

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Line returns s as one line that is safe to print on a terminal.
// Ordinary text, accents, CJK and emoji included, is kept as it is; what
// could move the cursor, change the terminal's state, start a new line or
// change the order in which a line reads is shown as a visible Go-style
// escape instead:
//
//   - C0 controls, DEL and C1 controls (U+0080 to U+009F, which some
//     terminals take as CSI, OSC and the like): `\n`, `\r`, `\t`, `\x1b`,
//     `\x7f`, `\u009b`;
//   - bidirectional controls (U+061C, U+200E, U+200F, U+202A to U+202E,
//     U+2066 to U+2069): an override or an isolate in one field would
//     reorder how the rest of the row reads, as in "evil\u202etxt.exe";
//   - the line and paragraph separators U+2028 and U+2029;
//   - bytes that are not UTF-8: `\xff`.
//
// A backslash is kept as it is, so that commands stay readable: an escape
// shown and the same characters typed literally look alike, and JSON
// output tells them apart.
func Line(s string) string { return render(s, false) }

// Lines is [Line] for text laid out on several lines on purpose, such as
// an error that lists problems or a page of markup: line breaks and tabs
// are kept, every other character Line escapes is escaped.
func Lines(s string) string { return render(s, true) }

// Unsafe reports whether Line escapes the rune r, n bytes long in its
// string. A RuneError of length 1 is a byte that is not UTF-8; one of
// length 3 is U+FFFD itself, which is harmless.
func Unsafe(r rune, n int) bool {
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

func render(s string, layout bool) string {
	unsafe := func(r rune, n int) bool {
		return Unsafe(r, n) && !(layout && (r == '\n' || r == '\t'))
	}
	i := 0
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if unsafe(r, n) {
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
		case !unsafe(r, n):
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
