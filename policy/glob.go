package policy

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// A glob is a compiled wildcard pattern over a whole string: '*' matches
// any run of characters (including '/'), '?' one character, '[...]' one
// character of a class ('[!...]' or '[^...]' negated, 'a-z' ranges), and
// '\' makes the next character literal. Target names, forward
// destinations and command words are matched with it.
type glob struct {
	src string
	// kind selects a fast path for the common shapes.
	kind globKind
	// lit is the literal text (globLiteral) or prefix (globPrefix).
	lit  string
	toks []globTok
}

type globKind uint8

const (
	globLiteral globKind = iota // no metacharacters: equality
	globStar                    // "*": everything
	globPrefix                  // "text*": a prefix
	globGeneral
)

type globTok struct {
	op    byte // 'l' literal rune, '?' any rune, '*' any run, '[' class
	r     rune
	neg   bool
	class []runeRange
}

type runeRange struct{ lo, hi rune }

var errGlobClass = errors.New("unterminated character class '['")

// compileGlob parses pattern.
func compileGlob(pattern string) (glob, error) {
	g := glob{src: pattern}
	var lit strings.Builder
	literal := true
	for i := 0; i < len(pattern); {
		c := pattern[i]
		switch c {
		case '*':
			literal = false
			// Consecutive stars are one star.
			if n := len(g.toks); n == 0 || g.toks[n-1].op != '*' {
				g.toks = append(g.toks, globTok{op: '*'})
			}
			i++
		case '?':
			literal = false
			g.toks = append(g.toks, globTok{op: '?'})
			i++
		case '[':
			literal = false
			t, n, err := parseClass(pattern[i:])
			if err != nil {
				return glob{}, err
			}
			g.toks = append(g.toks, t)
			i += n
		default:
			if c == '\\' {
				i++
				if i == len(pattern) {
					return glob{}, errors.New("trailing '\\' escapes nothing")
				}
			}
			r, n := utf8.DecodeRuneInString(pattern[i:])
			g.toks = append(g.toks, globTok{op: 'l', r: r})
			lit.WriteString(pattern[i : i+n])
			i += n
		}
	}
	switch {
	case literal:
		g.kind, g.lit, g.toks = globLiteral, lit.String(), nil
	case len(g.toks) == 1 && g.toks[0].op == '*':
		g.kind, g.toks = globStar, nil
	case g.toks[len(g.toks)-1].op == '*' && onlyLiterals(g.toks[:len(g.toks)-1]):
		g.kind, g.lit, g.toks = globPrefix, lit.String(), nil
	default:
		g.kind = globGeneral
	}
	return g, nil
}

func onlyLiterals(toks []globTok) bool {
	for _, t := range toks {
		if t.op != 'l' {
			return false
		}
	}
	return true
}

// parseClass reads "[...]" at the start of s, returning the token and how
// many bytes it took. A ']' right after the opening (or after '!'/'^') is
// a member, as in shells.
func parseClass(s string) (globTok, int, error) {
	t := globTok{op: '['}
	i := 1
	if i < len(s) && (s[i] == '!' || s[i] == '^') {
		t.neg = true
		i++
	}
	first := true
	for {
		if i >= len(s) {
			return globTok{}, 0, errGlobClass
		}
		if s[i] == ']' && !first {
			return t, i + 1, nil
		}
		first = false
		lo, n, err := classRune(s[i:])
		if err != nil {
			return globTok{}, 0, err
		}
		i += n
		hi := lo
		if i+1 < len(s) && s[i] == '-' && s[i+1] != ']' {
			hi, n, err = classRune(s[i+1:])
			if err != nil {
				return globTok{}, 0, err
			}
			if hi < lo {
				return globTok{}, 0, errors.New("character class range is backwards")
			}
			i += 1 + n
		}
		t.class = append(t.class, runeRange{lo, hi})
	}
}

func classRune(s string) (rune, int, error) {
	n := 0
	if s[0] == '\\' {
		n = 1
		if len(s) == 1 {
			return 0, 0, errGlobClass
		}
	}
	r, w := utf8.DecodeRuneInString(s[n:])
	return r, n + w, nil
}

// match reports whether the whole of s matches.
func (g *glob) match(s string) bool {
	switch g.kind {
	case globLiteral:
		return s == g.lit
	case globStar:
		return true
	case globPrefix:
		return strings.HasPrefix(s, g.lit)
	}
	// The classic single-backtrack wildcard match: on a mismatch, retry
	// from the most recent star with it swallowing one more character.
	// Linear in practice, O(len(s)·len(toks)) at worst.
	ti, si := 0, 0
	starT, starS := -1, 0
	for si < len(s) {
		if ti < len(g.toks) {
			t := &g.toks[ti]
			if t.op == '*' {
				starT, starS = ti, si
				ti++
				continue
			}
			r, n := utf8.DecodeRuneInString(s[si:])
			if t.one(r) {
				ti++
				si += n
				continue
			}
		}
		if starT < 0 {
			return false
		}
		_, n := utf8.DecodeRuneInString(s[starS:])
		starS += n
		ti, si = starT+1, starS
	}
	for ti < len(g.toks) && g.toks[ti].op == '*' {
		ti++
	}
	return ti == len(g.toks)
}

// one reports whether a single-character token matches r.
func (t *globTok) one(r rune) bool {
	switch t.op {
	case 'l':
		return r == t.r
	case '?':
		return true
	case '[':
		in := false
		for _, c := range t.class {
			if c.lo <= r && r <= c.hi {
				in = true
				break
			}
		}
		return in != t.neg
	}
	return false
}

// globMeta are the characters that make a glob word more than its text.
const globMeta = `*?[\`

// escapeGlob makes s match only itself.
func escapeGlob(s string) string {
	if !strings.ContainsAny(s, globMeta) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(globMeta, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
