package mask

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
)

// Secrets: keys, tokens and passwords. Each detector checks a cheap
// prefix first; only then does it need a window of bytes to decide.

// A window is the bytes a detector may read once its prefix matched:
// b[i:end]. Reading past end gives beyond, past the stream's end eof, so
// a decision depends on the window's bytes alone, however b was split.
type window struct {
	b   []byte
	end int
}

// Not bytes: past the end of the stream, past the end of a window. They
// differ from the detector results no and more.
const (
	eof    = -3
	beyond = -4
)

// newWindow returns the window of size bytes at b[i], or false when b ends
// inside it and more input may come.
func newWindow(b []byte, i, size int, final bool) (window, bool) {
	if !final && len(b) < i+size {
		return window{}, false
	}
	return window{b: b, end: i + size}, true
}

func (w window) at(j int) int {
	switch {
	case j >= w.end:
		return beyond
	case j >= len(w.b):
		return eof
	}
	return int(w.b[j])
}

// run returns the end of the run of bytes in cls starting at j.
func (w window) run(j int, cls *[256]bool) int {
	for c := w.at(j); c >= 0 && cls[c]; c = w.at(j) {
		j++
	}
	return j
}

// spaces skips up to max spaces and tabs.
func (w window) spaces(j, max int) int {
	for k := 0; k < max && (w.at(j) == ' ' || w.at(j) == '\t'); k++ {
		j++
	}
	return j
}

func in(cls *[256]bool, c int) bool { return c >= 0 && cls[c] }

// awsKeyID finds an AWS access key ID at b[i]: AKIA (long-term) or ASIA
// (temporary) and 16 upper-case letters or digits. A secret access key
// right after it (40 base64 characters, after one to three of space, tab
// and ,:;=|"') is masked too, as an aws-secret.
func (s *Stream) awsKeyID(b []byte, i int, final bool) int {
	if isWord(s.prev(b, i)) {
		return no
	}
	r := hasPrefixAt(b, i, "AKIA", final)
	if r == no {
		r = hasPrefixAt(b, i, "ASIA", final)
	}
	if r != 1 {
		return r
	}
	w, ok := newWindow(b, i, 64, final)
	if !ok {
		return more
	}
	for j := i + 4; j < i+20; j++ {
		if c := w.at(j); c < 0 || !isUpper(byte(c)) && !isDigit(byte(c)) {
			return no
		}
	}
	end := i + 20
	if c := w.at(end); c == beyond || c >= 0 && alnum[c] {
		return no
	}
	s.hit(AWSKeyID, i, end)
	s.edit(i+4, end, modeStars, 0)
	if !s.m.on[dAWSSecret] {
		return end
	}
	j := end
	for k := 0; k < 3 && in(awsSep, w.at(j)); k++ {
		j++
	}
	if j == end {
		return end
	}
	if hi := awsSecretAt(w, j); hi > 0 {
		s.hit(AWSSecret, j, hi)
		s.edit(j, hi, modeStars, 0)
		return hi
	}
	return end
}

var awsSep = class(" \t,:;=|\"'")

// awsSecretAt returns the end of a secret access key at w's j, or 0: 40
// base64 characters, not followed by another, and not all hexadecimal (a
// hash is not a key; a real key is almost never hex only).
func awsSecretAt(w window, j int) int {
	end := w.run(j, b64)
	if end-j != 40 || w.at(end) == '=' || w.at(end) == beyond {
		return 0
	}
	for k := j; k < end; k++ {
		c := w.b[k]
		if !isDigit(c) && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return end
		}
	}
	return 0
}

// awsSecret finds a secret access key by its name: aws_secret_access_key,
// SecretAccessKey, secret-access-key (any case), then an optional quote,
// '=' or ':' and an optional quote; only the key is masked.
func (s *Stream) awsSecret(b []byte, i int, final bool) int {
	if r := hasFoldPrefixAt(b, i, "secret", final); r != 1 {
		return r
	}
	w, ok := newWindow(b, i, 72, final)
	if !ok {
		return more
	}
	j := i + 6
	word := func(lit string) bool {
		if c := w.at(j); c == '_' || c == '-' {
			j++
		}
		for k := range len(lit) {
			if c := w.at(j + k); c < 0 || lower(byte(c)) != lit[k] {
				return false
			}
		}
		j += len(lit)
		return true
	}
	if !word("access") || !word("key") {
		return no
	}
	if c := w.at(j); c == '"' || c == '\'' {
		j++
	}
	j = w.spaces(j, 4)
	if c := w.at(j); c != '=' && c != ':' {
		return no
	}
	j = w.spaces(j+1, 4)
	if c := w.at(j); c == '"' || c == '\'' {
		j++
	}
	hi := awsSecretAt(w, j)
	if hi == 0 {
		return no
	}
	s.hit(AWSSecret, j, hi)
	s.edit(j, hi, modeStars, 0)
	return hi
}

// Caps on values masked as they stream.
const (
	maxToken    = 255
	maxJWT      = 16 << 10
	maxPassword = 1024
	maxPEM      = 64 << 10
)

// gitToken finds GitHub tokens (ghp_, gho_, ghu_, ghs_, ghr_ and at least
// 30 letters or digits; github_pat_ and at least 22 letters, digits or
// underscores) and GitLab personal access tokens (glpat- and at least 20
// of letters, digits, '_' and '-'). The prefix stays visible.
func (s *Stream) gitToken(b []byte, i int, final bool) int {
	if isWord(s.prev(b, i)) || s.prev(b, i) == '-' {
		return no
	}
	var undecided bool
	for _, k := range &gitKinds {
		if !s.m.on[k.d] {
			continue
		}
		switch hasPrefixAt(b, i, k.prefix, final) {
		case more:
			undecided = true
			continue
		case no:
			continue
		}
		from := i + len(k.prefix)
		w, ok := newWindow(b, from, k.min, final)
		if !ok {
			return more
		}
		if w.run(from, k.first) < from+k.min {
			return no
		}
		s.open(contRun, k.det, i, from, k.rest, modeStars, maxToken)
		return from
	}
	if undecided {
		return more
	}
	return no
}

// gitKinds are the token prefixes gitToken tries, in order: the minimum
// length after the prefix, and the classes of its first bytes and of the
// rest.
var gitKinds = [...]struct {
	d           int
	det, prefix string
	min         int
	first, rest *[256]bool
}{
	{dGitHub, GitHubToken, "github_pat_", 22, tokWord, tokWord},
	{dGitLab, GitLabToken, "glpat-", 20, b64url, glClass},
	{dGitHub, GitHubToken, "ghp_", 30, alnum, alnum},
	{dGitHub, GitHubToken, "gho_", 30, alnum, alnum},
	{dGitHub, GitHubToken, "ghu_", 30, alnum, alnum},
	{dGitHub, GitHubToken, "ghs_", 30, alnum, alnum},
	{dGitHub, GitHubToken, "ghr_", 30, alnum, alnum},
}

// slackToken finds Slack tokens: xoxa-, xoxb-, xoxp-, xoxr- or xoxs- and
// at least 10 letters, digits or dashes, one of them a digit. The prefix
// stays visible.
func (s *Stream) slackToken(b []byte, i int, final bool) int {
	if isWord(s.prev(b, i)) {
		return no
	}
	if r := hasPrefixAt(b, i, "xox", final); r != 1 {
		return r
	}
	w, ok := newWindow(b, i, 15, final)
	if !ok {
		return more
	}
	switch w.at(i + 3) {
	case 'a', 'b', 'p', 'r', 's':
	default:
		return no
	}
	if w.at(i+4) != '-' || w.run(i+5, slackCls) < i+15 || !bytes.ContainsAny(b[i+5:i+15], "0123456789") {
		return no
	}
	s.open(contRun, SlackToken, i, i+5, slackCls, modeStars, maxToken)
	return i + 5
}

// maxJWTHeader is how much of a JWT's header the detector reads: all of
// a header up to 64 characters, else its first 64 (48 bytes decoded).
const maxJWTHeader = 64

// jwt finds a JSON Web Token at b[i]: base64url parts separated by dots,
// whose header decodes to a JSON object with an "alg" member and whose
// payload starts like a JSON object ("eyJ"). A header longer than 64
// characters cannot be parsed within the hold-back; its first 48 decoded
// bytes must then start with '{' and contain "alg". The whole token is
// masked; its dots stay.
func (s *Stream) jwt(b []byte, i int, final bool) int {
	if p := s.prev(b, i); p >= 0 && (b64url[p] || p == '.') {
		return no
	}
	if r := hasPrefixAt(b, i, "eyJ", final); r != 1 {
		return r
	}
	w, ok := newWindow(b, i, maxJWTHeader+4, final)
	if !ok {
		return more
	}
	h := w.run(i, b64url)
	switch {
	case h-i > maxJWTHeader:
		var dec [maxJWTHeader / 4 * 3]byte
		if _, err := base64.RawURLEncoding.Decode(dec[:], b[i:i+maxJWTHeader]); err != nil ||
			dec[0] != '{' || !bytes.Contains(dec[:], []byte(`"alg"`)) {
			return no
		}
	case w.at(h) == '.' && w.at(h+1) == 'e' && w.at(h+2) == 'y' && w.at(h+3) == 'J':
		if !jwtHeader(b[i:h]) {
			return no
		}
	default:
		return no
	}
	s.open(contRun, JWT, i, i, jwtClass, modeBody, maxJWT)
	return i
}

// jwtHeader reports whether enc, base64url without padding, decodes to a
// JSON object with a string "alg".
func jwtHeader(enc []byte) bool {
	var dec [maxJWTHeader / 4 * 3]byte
	n, err := base64.RawURLEncoding.Decode(dec[:], enc)
	if err != nil {
		return false
	}
	var h map[string]json.RawMessage
	if json.Unmarshal(dec[:n], &h) != nil {
		return false
	}
	alg := h["alg"]
	return len(alg) > 2 && alg[0] == '"'
}

// pem finds the start of a PEM private key block: a line "-----BEGIN
// <label>-----" whose label (upper-case letters, digits and spaces, at
// most 40) contains "PRIVATE KEY". The lines stay; everything between
// them is masked as it streams, until "-----END ", a byte that cannot be
// in a PEM body (base64, headers such as "Proc-Type: 4,ENCRYPTED",
// whitespace, and the \n escapes of a key quoted in JSON), or 64 KiB.
func (s *Stream) pem(b []byte, i int, final bool) int {
	if r := hasPrefixAt(b, i, "-----BEGIN ", final); r != 1 {
		return r
	}
	w, ok := newWindow(b, i, 11+40+5, final)
	if !ok {
		return more
	}
	j := i + 11
	for c := w.at(j); c >= 0 && (isUpper(byte(c)) || isDigit(byte(c)) || c == ' '); c = w.at(j) {
		j++
	}
	if j-(i+11) > 40 || !bytes.Contains(b[i+11:j], []byte("PRIVATE KEY")) {
		return no
	}
	for k := range 5 {
		if w.at(j+k) != '-' {
			return no
		}
	}
	s.open(contPEM, PEMPrivateKey, j+5, j+5, pemClass, modeBody, maxPEM)
	return j + 5
}

// password finds a value assigned to a password: a key ending in
// "password", "passwd" or "passphrase" (any case, so PGPASSWORD= and
// db_password: count), an optional closing quote, then '=', ':', ':=' or
// '=>' (or, after "--", a space), and a value. Only the value is masked.
//
//   - A quoted value is masked up to its closing quote (backslash escapes
//     honoured).
//   - An unquoted value after '=' runs to a space, a quote, '&', ';' or a
//     control byte.
//   - An unquoted value after ':' must be all that is left of the line (at
//     most 40 bytes), so that messages such as "passwd: password updated
//     successfully" are not taken for assignments.
//
// A key right after '/' (a path such as /etc/passwd) is not a key.
func (s *Stream) password(b []byte, i int, final bool) int {
	kw, undecided := 0, false
	for _, k := range [...]string{"password", "passwd", "passphrase"} {
		switch hasFoldPrefixAt(b, i, k, final) {
		case 1:
			kw = len(k)
		case more:
			undecided = true
		}
		if kw > 0 {
			break
		}
	}
	if kw == 0 {
		if undecided {
			return more
		}
		return no
	}
	if before(b, i, 1) == '/' {
		return no
	}
	w, ok := newWindow(b, i, 72, final)
	if !ok {
		return more
	}
	dashes := before(b, i, 1) == '-' && before(b, i, 2) == '-'
	j := i + kw
	if c := w.at(j); c == '"' || c == '\'' {
		j++
	}
	k := w.spaces(j, 4)
	var sep byte
	switch c0, c1 := w.at(k), w.at(k+1); {
	case c0 == '=' && c1 == '=':
		return no // a comparison
	case c0 == '=' && c1 == '>', c0 == ':' && c1 == '=':
		sep, k = '=', k+2
	case c0 == '=':
		sep, k = '=', k+1
	case c0 == ':' && c1 != ':':
		sep, k = ':', k+1
	case dashes && k > j && c0 != '-':
		sep = ' '
	default:
		return no
	}
	v := w.spaces(k, 4)
	c := w.at(v)
	switch {
	case c == '"' || c == '\'':
		if first := w.at(v + 1); first == c || !in(quotedCls, first) {
			return no
		}
		s.open(contRun, Password, v+1, v+1, quotedCls, modeStars, maxPassword)
		s.cont.quote = byte(c)
		return v + 1
	case !in(valueCls, c):
		return no
	case sep == ':':
		end := w.run(v, lineCls)
		if end-v > 40 {
			return no
		}
		switch w.at(w.spaces(end, 4)) {
		case '\r', '\n', eof:
		default:
			return no
		}
		s.hit(Password, v, end)
		s.edit(v, end, modeStars, 0)
		return end
	}
	s.open(contRun, Password, v, v, valueCls, modeStars, maxPassword)
	return v
}

// lineCls is what an unquoted value after ':' may hold: it runs to the
// end of the line, so '&' and ';' belong to it.
var lineCls = valueClass("")

var (
	urlUser = valueClass(`:/@?#"'<>` + "`")
	urlPass = valueClass(`/@?#"'<>` + "`")
)

// urlPassword finds the password in a URL's user information,
// scheme://user:password@host, at the "://" in b[i:]. User and password
// together may be at most 64 bytes. Only the password is masked.
func (s *Stream) urlPassword(b []byte, i int, final bool) int {
	if p := before(b, i, 1); p < 0 || !alnum[p] {
		return no
	}
	if r := hasPrefixAt(b, i, "://", final); r != 1 {
		return r
	}
	w, ok := newWindow(b, i, 3+64+2, final)
	if !ok {
		return more
	}
	colon := w.run(i+3, urlUser)
	if w.at(colon) != ':' {
		return no
	}
	at := w.run(colon+1, urlPass)
	if at == colon+1 || w.at(at) != '@' || at-(i+3) > 64 {
		return no
	}
	if h := w.at(at + 1); h < 0 || !alnum[h] && h != '[' {
		return no
	}
	s.hit(URLPassword, colon+1, at)
	s.edit(colon+1, at, modeStars, 0)
	return at
}
