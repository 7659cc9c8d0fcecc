package mask

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// HoldBack bounds how much text a [Stream] keeps back after a Write: fewer
// than HoldBack bytes of text (output with its escape sequences taken
// out), all of them after the start of a value that the bytes still to
// come may complete. Every bounded detector decides within this many bytes
// of text of where its value (or the keyword before it) starts; longer
// values are masked as they stream, see "Long values" in the package doc.
// With the escape sequences among the text, a Stream holds fewer than
// [MaxHeld] bytes.
const HoldBack = 80

// lookBehind is how many bytes before the scanning position a detector may
// inspect (a word boundary, the two letters of an IBAN's country code, an
// "SSN:" label). A Stream keeps this many released bytes as context.
const lookBehind = 16

// Detector names, as profiles list them and hits report them.
const (
	Card          = "card"
	SSN           = "ssn"
	IBAN          = "iban"
	AWSKeyID      = "aws-key-id"
	AWSSecret     = "aws-secret"
	GitHubToken   = "github-token"
	GitLabToken   = "gitlab-token"
	SlackToken    = "slack-token"
	JWT           = "jwt"
	PEMPrivateKey = "pem-private-key"
	Password      = "password"
	URLPassword   = "url-password"
)

// builtin lists the built-in detectors in the order they are tried when
// two could start at the same byte (they rarely can).
var builtin = []string{
	Card, SSN, IBAN, AWSKeyID, AWSSecret, GitHubToken, GitLabToken,
	SlackToken, JWT, PEMPrivateKey, Password, URLPassword,
}

// Groups are the built-in profile names; a profile's Detectors may name
// them as well as single detectors.
var groups = map[string][]string{
	"pci": {Card},
	"pii": {SSN, IBAN},
	"secrets": {AWSKeyID, AWSSecret, GitHubToken, GitLabToken, SlackToken,
		JWT, PEMPrivateKey, Password, URLPassword},
	"all": builtin,
}

// Detectors returns the names of the built-in detectors.
func Detectors() []string { return slices.Clone(builtin) }

// BuiltinProfiles returns the names of the built-in profiles, sorted.
func BuiltinProfiles() []string {
	names := make([]string, 0, len(groups))
	for n := range groups {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// BuiltinProfile returns the built-in profile called name: "pci", "pii",
// "secrets" or "all". A policy's masking profile names one of these.
func BuiltinProfile(name string) (Profile, bool) {
	d, ok := groups[name]
	if !ok {
		return Profile{}, false
	}
	return Profile{Name: name, Detectors: slices.Clone(d)}, true
}

// A Profile says what to mask.
type Profile struct {
	// Name is for messages; it has no effect on masking.
	Name string

	// Detectors names built-in detectors ("card", "jwt"…) and built-in
	// profiles ("pci", "pii", "secrets", "all"), in any order.
	Detectors []string

	// Custom adds detectors defined by regular expressions.
	Custom []CustomRule

	// Keep is how many trailing digits (or letters) of a card number, an
	// SSN or an IBAN stay visible. 0 means the default, 4; a negative
	// value shows none. Values above 4 are taken as 4: PCI DSS allows no
	// more of a card number to be shown.
	Keep int
}

// A CustomRule is a detector given by a regular expression (RE2 syntax, as
// package regexp takes it).
//
// The expression is tried at each byte of text that can begin a match,
// against a window of at most [HoldBack] bytes of text (escape sequences
// are taken out of it) that ends at the edge of an OSC string; the
// leftmost-first match there is masked, and escape sequences inside it
// pass through. The window's edges count as the start and end of the text
// for \b, so a rule should say where its value starts (a literal such as
// `EMP-\d{6}`) rather than rely on \b at its end. ^, $, \A and \z are
// refused: a stream has no lines or ends to anchor to. An expression that
// can match the empty string, or whose first byte can be almost anything
// (`.+`), is refused too.
type CustomRule struct {
	// Name names the detector in hits: 1 to 32 of a–z, 0–9 and '-',
	// starting with a letter, and not a built-in name.
	Name string
	// Pattern is the regular expression.
	Pattern string
	// Keep is how many trailing letters or digits of a match stay
	// visible; 0 masks them all. Letters, digits and non-ASCII bytes are
	// replaced by '*'; punctuation and spaces are kept.
	Keep int
}

// A Hit is one masked value. It never holds the value.
type Hit struct {
	// Detector is the name of the detector (or custom rule) that found it.
	Detector string
	// Offset is where the value's first byte is in the stream, counting
	// every byte given to Write since the stream began. Masking preserves
	// length, so it is also the offset in the masked output.
	Offset int64
	// Length is how many bytes of the stream the value spans, from its
	// first byte to its last: escape sequences inside it count, those
	// before and after it do not. For a token or key that starts with a
	// well-known prefix ("ghp_", "AKIA") the prefix counts, though it
	// stays visible.
	Length int
}

// Errors Compile returns, wrapped.
var (
	ErrUnknownDetector = errors.New("mask: unknown detector")
	ErrBadRule         = errors.New("mask: bad custom rule")
)

// A Masker is a compiled [Profile]. It is safe for concurrent use; each
// stream of output it masks needs its own [Stream].
type Masker struct {
	name   string
	on     [numDetectors]bool
	keep   int
	trig   [256]uint16 // which detectors a byte may start
	stop   [256]uint64 // stop classes (s…) a byte may come before (bits 0–15), or be the first (16–31), second (32–47) or third (48–63) byte of
	custom []*customRule
}

// Detector indexes into Masker.on, in the order of builtin.
const (
	dCard = iota
	dSSN
	dIBAN
	dAWSKeyID
	dAWSSecret
	dGitHub
	dGitLab
	dSlack
	dJWT
	dPEM
	dPassword
	dURL
	numDetectors
)

// Trigger bits: what a byte may begin.
const (
	tDigit uint16 = 1 << iota
	tAWSKeyID
	tAWSSecret
	tGit
	tSlack
	tJWT
	tPEM
	tPassword
	tURL
	tCustom
)

// Stop classes: the scan stops at b[i] when, for one class, b[i-1] may
// come before it, b[i] may be its first byte, b[i+1] its second and
// b[i+2] its third. Every value, escape sequence and custom match starts
// at a stop, or (a number) where scanning resumes after an escape
// sequence, a value or a byte that try has decided.
const (
	sAny       uint64 = 1 << iota // a custom rule: any bytes may follow
	sDigits                       // three digits, not after a letter or digit
	sIBAN                         // two digits after an upper-case letter
	sAWSKeyID                     // AKI, ASI
	sAWSSecret                    // sec
	sGitHub                       // ghp, gho…
	sGitHubPAT                    // git
	sGitLab                       // glp
	sSlack                        // xox
	sJWT                          // eyJ
	sPEM                          // ---
	sPassword                     // pas
	sURL                          // ://
)

type customRule struct {
	name  string
	re    *regexp.Regexp // the pattern anchored at the window's start
	first [256]bool      // bytes a match can start with
	keep  int
}

// Compile checks p and prepares it for masking. It fails on an unknown
// detector name or a custom rule that is invalid or would not work on a
// stream (see [CustomRule]).
func Compile(p Profile) (*Masker, error) {
	m := &Masker{name: p.Name, keep: p.Keep}
	switch {
	case m.keep == 0:
		m.keep = 4
	case m.keep < 0:
		m.keep = 0
	case m.keep > 4:
		m.keep = 4
	}
	for _, name := range p.Detectors {
		names, ok := groups[name]
		if !ok {
			names = []string{name}
		}
		for _, n := range names {
			i := slices.Index(builtin, n)
			if i < 0 {
				return nil, fmt.Errorf("%w %q (known: %s, and the profiles all, pci, pii, secrets)",
					ErrUnknownDetector, n, strings.Join(builtin, ", "))
			}
			m.on[i] = true
		}
	}
	seen := map[string]bool{}
	for _, r := range p.Custom {
		c, err := compileRule(r)
		if err != nil {
			return nil, err
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("%w %q: name used twice", ErrBadRule, r.Name)
		}
		seen[r.Name] = true
		m.custom = append(m.custom, c)
	}
	// Every built-in detector needs particular second and third bytes
	// too, and a number a particular byte before it: the stop table lets
	// the scan skip, say, an 's' that does not start "sec", a run of two
	// digits or the digits inside a hex string, without a call.
	var anyByte, notAlnum []byte
	for i := range 256 {
		anyByte = append(anyByte, byte(i))
		if !alnum[i] {
			notAlnum = append(notAlnum, byte(i))
		}
	}
	all := string(anyByte)
	set := func(trig uint16, stop uint64, on bool, prev, first, second, third string) {
		if !on {
			return
		}
		for i := range len(first) {
			m.trig[first[i]] |= trig
		}
		for k, lane := range [...]string{prev, first, second, third} {
			for i := range len(lane) {
				m.stop[lane[i]] |= stop << (16 * k)
			}
		}
	}
	const digits = "0123456789"
	const upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	numbers := m.on[dCard] || m.on[dSSN] || m.on[dIBAN]
	// A card number or an SSN starts with a run of at least three digits,
	// not after a letter or digit; an IBAN's check digits (two) follow
	// the letters of its country code.
	set(tDigit, sDigits, numbers, string(notAlnum), digits, digits, digits)
	set(tDigit, sIBAN, m.on[dIBAN], upper, digits, digits, all)
	set(tAWSKeyID, sAWSKeyID, m.on[dAWSKeyID], all, "A", "KS", "I")
	set(tAWSSecret, sAWSSecret, m.on[dAWSSecret], all, "sS", "eE", "cC")
	set(tGit, sGitHub, m.on[dGitHub], all, "g", "h", "pousr")
	set(tGit, sGitHubPAT, m.on[dGitHub], all, "g", "i", "t")
	set(tGit, sGitLab, m.on[dGitLab], all, "g", "l", "p")
	set(tSlack, sSlack, m.on[dSlack], all, "x", "o", "x")
	set(tJWT, sJWT, m.on[dJWT], all, "e", "y", "J")
	set(tPEM, sPEM, m.on[dPEM], all, "-", "-", "-")
	set(tPassword, sPassword, m.on[dPassword], all, "pP", "aA", "sS")
	set(tURL, sURL, m.on[dURL], all, ":", "/", "/")
	for _, c := range m.custom {
		for b, ok := range c.first {
			if ok {
				set(tCustom, sAny, true, all, string([]byte{byte(b)}), all, all)
			}
		}
	}
	return m, nil
}

// Name is the profile's name.
func (m *Masker) Name() string { return m.name }

// Enabled reports whether m masks anything at all. A caller may skip
// masking (and the hold-back) for a masker that does not.
func (m *Masker) Enabled() bool {
	return slices.Contains(m.on[:], true) || len(m.custom) > 0
}

func compileRule(r CustomRule) (*customRule, error) {
	if !validRuleName(r.Name) {
		return nil, fmt.Errorf("%w %q: a name is 1 to 32 of a-z, 0-9 and '-', starting with a letter", ErrBadRule, r.Name)
	}
	if slices.Contains(builtin, r.Name) || groups[r.Name] != nil {
		return nil, fmt.Errorf("%w %q: the name of a built-in detector or profile", ErrBadRule, r.Name)
	}
	bad := func(why string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrBadRule, r.Name, fmt.Sprintf(why, args...))
	}
	tree, err := syntax.Parse(r.Pattern, syntax.Perl)
	if err != nil {
		return nil, bad("%v", err)
	}
	tree = tree.Simplify()
	if hasAnchor(tree) {
		return nil, bad("^, $, \\A and \\z cannot anchor a match in a stream")
	}
	c := &customRule{name: r.Name, keep: max(r.Keep, 0)}
	if firstBytes(tree, &c.first) {
		return nil, bad("the pattern can match the empty string")
	}
	n := 0
	for _, ok := range c.first {
		if ok {
			n++
		}
	}
	if n > 200 {
		return nil, bad("a match can start with almost any byte; start the pattern with a literal or a narrow class")
	}
	if n == 0 {
		return nil, bad("the pattern can never match")
	}
	c.re, err = regexp.Compile(`^(?:` + r.Pattern + `)`)
	if err != nil {
		return nil, bad("%v", err)
	}
	return c, nil
}

func validRuleName(s string) bool {
	if len(s) < 1 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func hasAnchor(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText:
		return true
	}
	return slices.ContainsFunc(re.Sub, hasAnchor)
}

// firstBytes adds to set every byte a match of re can start with, and
// reports whether re can match the empty string.
func firstBytes(re *syntax.Regexp, set *[256]bool) (nullable bool) {
	switch re.Op {
	case syntax.OpNoMatch:
		return false
	case syntax.OpEmptyMatch, syntax.OpWordBoundary, syntax.OpNoWordBoundary,
		syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText:
		return true
	case syntax.OpLiteral:
		if len(re.Rune) == 0 {
			return true
		}
		addRune(set, re.Rune[0], re.Flags&syntax.FoldCase != 0)
		return false
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			lo, hi := re.Rune[i], re.Rune[i+1]
			for r := lo; r <= hi && r < 0x80; r++ {
				set[r] = true
			}
			if hi >= 0x80 {
				for b := 0xc2; b <= 0xf4; b++ {
					set[b] = true
				}
			}
		}
		return false
	case syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		for b := range set {
			set[b] = b != '\n' || re.Op == syntax.OpAnyChar
		}
		return false
	case syntax.OpCapture, syntax.OpPlus:
		return firstBytes(re.Sub[0], set)
	case syntax.OpStar, syntax.OpQuest:
		firstBytes(re.Sub[0], set)
		return true
	case syntax.OpRepeat:
		return firstBytes(re.Sub[0], set) || re.Min == 0
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			if !firstBytes(sub, set) {
				return false
			}
		}
		return true
	case syntax.OpAlternate:
		nullable = false
		for _, sub := range re.Sub {
			if firstBytes(sub, set) {
				nullable = true
			}
		}
		return nullable
	}
	// Unknown operators: assume anything.
	for b := range set {
		set[b] = true
	}
	return true
}

func addRune(set *[256]bool, r rune, fold bool) {
	add := func(r rune) {
		if r < 0x80 {
			set[r] = true
			return
		}
		var buf [utf8.UTFMax]byte
		utf8.EncodeRune(buf[:], r)
		set[buf[0]] = true
	}
	add(r)
	if fold {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			add(f)
		}
	}
}
