package mask

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Profile
		want error
	}{
		{"unknown detector", Profile{Detectors: []string{"cards"}}, ErrUnknownDetector},
		{"bad name", Profile{Custom: []CustomRule{{Name: "Emp", Pattern: "EMP-[0-9]+"}}}, ErrBadRule},
		{"built-in name", Profile{Custom: []CustomRule{{Name: "card", Pattern: "x[0-9]+"}}}, ErrBadRule},
		{"duplicate", Profile{Custom: []CustomRule{{Name: "a", Pattern: "a1"}, {Name: "a", Pattern: "a2"}}}, ErrBadRule},
		{"bad regexp", Profile{Custom: []CustomRule{{Name: "a", Pattern: "EMP-("}}}, ErrBadRule},
		{"empty match", Profile{Custom: []CustomRule{{Name: "a", Pattern: "x*"}}}, ErrBadRule},
		{"anchor", Profile{Custom: []CustomRule{{Name: "a", Pattern: "^EMP"}}}, ErrBadRule},
		{"any first byte", Profile{Custom: []CustomRule{{Name: "a", Pattern: ".+@corp"}}}, ErrBadRule},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Compile(tc.p); !errors.Is(err, tc.want) {
				t.Fatalf("Compile: %v, want %v", err, tc.want)
			}
		})
	}
	for _, name := range []string{"pci", "pii", "secrets", "all"} {
		p, ok := BuiltinProfile(name)
		if !ok {
			t.Fatalf("no built-in profile %q", name)
		}
		if _, err := Compile(p); err != nil {
			t.Fatal(err)
		}
	}
	if m, _ := Compile(Profile{}); m.Enabled() {
		t.Error("an empty profile is enabled")
	}
}

func TestProfilesSelect(t *testing.T) {
	in := []byte("4111 1111 1111 1111 and AKIAIOSFODNN7EXAMPLE and 123-45-6789\n")
	for _, tc := range []struct {
		profile string
		want    string
	}{
		{"pci", "**** **** **** 1111 and AKIAIOSFODNN7EXAMPLE and 123-45-6789\n"},
		{"secrets", "4111 1111 1111 1111 and AKIA**************** and 123-45-6789\n"},
		{"pii", "4111 1111 1111 1111 and AKIAIOSFODNN7EXAMPLE and ***-**-6789\n"},
		{"all", "**** **** **** 1111 and AKIA**************** and ***-**-6789\n"},
	} {
		p, _ := BuiltinProfile(tc.profile)
		m, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		if out, _ := maskAll(m, in); string(out) != tc.want {
			t.Errorf("%s: got %q, want %q", tc.profile, out, tc.want)
		}
	}
}

func TestKeep(t *testing.T) {
	in := []byte("4111-1111-1111-1111 ")
	for _, tc := range []struct {
		keep int
		want string
	}{
		{0, "****-****-****-1111 "},
		{-1, "****-****-****-**** "},
		{2, "****-****-****-**11 "},
		{9, "****-****-****-1111 "},
	} {
		m, _ := Compile(Profile{Detectors: []string{"pci"}, Keep: tc.keep})
		if out, _ := maskAll(m, in); string(out) != tc.want {
			t.Errorf("keep %d: got %q, want %q", tc.keep, out, tc.want)
		}
	}
}

func TestCustomRule(t *testing.T) {
	m, err := Compile(Profile{Custom: []CustomRule{
		{Name: "employee-id", Pattern: `EMP-\d{6}`, Keep: 2},
		{Name: "project", Pattern: `(?i)project[ _]falcon`},
	}})
	if err != nil {
		t.Fatal(err)
	}
	in := []byte("EMP-123456 on Project Falcon; EMP-12 \x1b[1mEMP-654321\x1b[0m")
	out, hits := maskAll(m, in)
	want := "***-****56 on ******* ******; EMP-12 \x1b[1m***-****21\x1b[0m"
	if string(out) != want {
		t.Errorf("got  %q\nwant %q", out, want)
	}
	if len(hits) != 3 || hits[0] != (Hit{"employee-id", 0, 10}) || hits[1] != (Hit{"project", 14, 14}) {
		t.Errorf("hits %v", hits)
	}
	// A match reads through an escape sequence, which passes untouched,
	// and stops at the edge of an OSC string.
	m, _ = Compile(Profile{Custom: []CustomRule{{Name: "word", Pattern: `W[^ ]+`}}})
	out, hits = maskAll(m, []byte("Wabc\x1b[31mdef ok"))
	if string(out) != "****\x1b[31m*** ok" || len(hits) != 1 || hits[0] != (Hit{"word", 0, 12}) {
		t.Errorf("got %q %v", out, hits)
	}
	out, _ = maskAll(m, []byte("Wabc\x1b]0;def\x07"))
	if string(out) != "****\x1b]0;def\x07" {
		t.Errorf("got %q", out)
	}
}

// TestCustomRuleStartingWithDigit: a custom rule that begins with a digit
// is tried even beside the number detectors, which skip the digit runs
// they reject; and a card is still a card.
func TestCustomRuleStartingWithDigit(t *testing.T) {
	m, err := Compile(Profile{Detectors: []string{"pci", "pii"}, Custom: []CustomRule{{Name: "account", Pattern: `77-\d{6}`}}})
	if err != nil {
		t.Fatal(err)
	}
	out, hits := maskAll(m, []byte("acct 77-123456 card 4111 1111 1111 1111\n"))
	if want := "acct **-****** card **** **** **** 1111\n"; string(out) != want {
		t.Errorf("got  %q\nwant %q", out, want)
	}
	if len(hits) != 2 || hits[0].Detector != "account" || hits[1].Detector != "card" {
		t.Errorf("hits %v", hits)
	}
}

// A Write that ends inside an escape sequence or a possible value holds
// it back; Flush releases it.
func TestHoldAndFlush(t *testing.T) {
	m := allMasker(t)
	s := m.NewStream()
	out, _ := s.Write([]byte("ok \x1b[38;5"))
	if string(out) != "ok " {
		t.Fatalf("got %q: a partial escape sequence was released", out)
	}
	out, _ = s.Write([]byte(";208mcard 4111 1111"))
	if string(out) != "\x1b[38;5;208mcard " {
		t.Fatalf("got %q", out)
	}
	out, hits := s.Write([]byte(" 1111 1111\n$ "))
	if string(out) != "**** **** **** 1111\n$ " || len(hits) != 1 || hits[0] != (Hit{Card, 19, 19}) {
		t.Fatalf("got %q %v", out, hits)
	}
	// An echoed keystroke that may start a value waits for the idle Flush.
	out, _ = s.Write([]byte("4"))
	if len(out) != 0 {
		t.Fatalf("got %q", out)
	}
	if out, _ = s.Flush(); string(out) != "4" {
		t.Fatalf("Flush: got %q", out)
	}
}

// A long value stays open across Write and Flush, and its hit comes when it
// ends.
func TestLongValue(t *testing.T) {
	m := allMasker(t)
	s := m.NewStream()
	var out []byte
	o, hits := s.Write([]byte("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXkt"))
	out = append(out, o...)
	if len(hits) != 0 || s.Held() >= HoldBack {
		t.Fatalf("hits %v, held %d", hits, s.Held())
	}
	o, _ = s.Flush()
	out = append(out, o...)
	o, _ = s.Write([]byte(strings.Repeat("QUFBQUFB", 500) + "\n"))
	out = append(out, o...)
	if s.Held() >= HoldBack {
		t.Fatalf("held %d", s.Held())
	}
	o, hits = s.Write([]byte("-----END OPENSSH PRIVATE KEY-----\n"))
	out = append(out, o...)
	o, h := s.Close()
	out = append(out, o...)
	hits = append(hits, h...)
	if len(hits) != 1 || hits[0].Detector != PEMPrivateKey || hits[0].Offset != 35 || hits[0].Length != 1+16+4000 {
		t.Fatalf("hits %v", hits)
	}
	if bytes.Contains(out, []byte("QUFB")) || bytes.Contains(out, []byte("b3Bl")) {
		t.Fatal("key material in the output")
	}
	// Close ends a value that is still open.
	s = m.NewStream()
	s.Write([]byte("GITHUB_TOKEN=ghp_C3J27XDCG2LmlZGEONYlgCtjfIZ4SOcMz9CP"))
	if _, hits = s.Close(); len(hits) != 1 || hits[0] != (Hit{GitHubToken, 13, 40}) {
		t.Fatalf("Close: hits %v", hits)
	}
}

// The body of an OSC string is searched; past 4 KiB the string is taken
// to have ended, and what follows is read as ordinary text.
func TestOSCCap(t *testing.T) {
	m := allMasker(t)
	in := append([]byte("\x1b]0;"), bytes.Repeat([]byte("x"), maxOSC)...)
	in = append(in, " 4111111111111111 "...)
	out, hits := maskAll(m, in)
	if len(hits) != 1 || bytes.Contains(out, []byte("4111111111111111")) {
		t.Fatalf("hits %v", hits)
	}
	out, hits = maskAll(m, []byte("\x1b]0;4111111111111111\x07 4111111111111111"))
	if len(hits) != 2 || string(out) != "\x1b]0;************1111\x07 ************1111" {
		t.Fatalf("got %q %v", out, hits)
	}
	// The cap ends the string: a value across it is two halves.
	in = append([]byte("\x1b]0;"), bytes.Repeat([]byte("x"), maxOSC-8)...)
	in = append(in, " 4111111111111111 "...)
	if out, hits = maskAll(m, in); len(hits) != 0 || !bytes.Equal(out, in) {
		t.Fatalf("got %v", hits)
	}
}

// Masking keeps UTF-8 valid: values are ASCII, and a password's non-ASCII
// bytes are masked whole, the cap never cutting a character.
func TestUTF8(t *testing.T) {
	m := allMasker(t)
	for _, in := range []string{
		"password=pässwört ünd mehr",
		"password=" + strings.Repeat("ü", maxPassword) + " next",
		"Karte: 4111 1111 1111 1111 — gültig",
	} {
		out, _ := maskAll(m, []byte(in))
		if !utf8.Valid(out) {
			t.Errorf("%q: invalid UTF-8 %q", in, out)
		}
	}
}

// Escape sequences inside a value pass through untouched; the value's own
// characters are masked, and its hit spans it in the stream.
func TestEscapesInsideValues(t *testing.T) {
	m := allMasker(t)
	for _, tc := range []struct {
		in, want string
		hits     []Hit
	}{
		{"4111 \x1b[31m1111 1\x1b[0m111 1111\n", "**** \x1b[31m**** *\x1b[0m*** 1111\n",
			[]Hit{{Card, 0, 28}}},
		{"x 41\x1b[1;32m11111111111111\x1b[0m y", "x **\x1b[1;32m**********1111\x1b[0m y",
			[]Hit{{Card, 2, 23}}},
		{"password=\x1b[Khun\x1b(Bter2 ok", "password=\x1b[K***\x1b(B**** ok",
			[]Hit{{Password, 12, 10}}},
		{"ghp_C3J27XDCG2Lml\x1b7ZGEONYlgCtjfIZ4SOcMz9CP\n", "ghp_*************\x1b7***********************\n",
			[]Hit{{GitHubToken, 0, 42}}},
		// SS3 takes the character after it: an arrow key is not text.
		{"\x1bOA4111111111111111\x1bOB\r", "\x1bOA************1111\x1bOB\r", []Hit{{Card, 3, 16}}},
		// A string's edges are edges of values.
		{"\x1b]0;4111 1111 1111 1111\x07", "\x1b]0;**** **** **** 1111\x07", []Hit{{Card, 4, 19}}},
		{"4111 1111\x1b]0;x\x07 1111 1111", "4111 1111\x1b]0;x\x07 1111 1111", nil},
		{"\x1b]0;4111 1111\x1b\\ 1111 1111", "\x1b]0;4111 1111\x1b\\ 1111 1111", nil},
	} {
		out, hits := maskAll(m, []byte(tc.in))
		if string(out) != tc.want || !slices.Equal(hits, tc.hits) {
			t.Errorf("%q:\n got %q %v\nwant %q %v", tc.in, out, hits, tc.want, tc.hits)
		}
	}
}

// However many escape sequences come inside a value, a Stream holds fewer
// than MaxHeld bytes, and it decides the same however the bytes are split.
func TestEscapeFlood(t *testing.T) {
	m := allMasker(t)
	for _, in := range [][]byte{
		[]byte("4111" + strings.Repeat("\x1b[m", 3000) + "1111 1111 1111\n"),
		[]byte("password=" + strings.Repeat("\x1b[38;2;1;2;3m", 400) + "hunter2 ok\n"),
		[]byte("AKIA" + strings.Repeat("\x1b[1m\x1b(B", 1000) + "IOSFODNN7EXAMPLE\n"),
		[]byte(strings.Repeat("4\x1b[31m", 2000) + "\n"),
	} {
		wantOut, wantHits := maskAll(m, in)
		for _, size := range []int{1, 7, 100, 4096} {
			s := m.NewStream()
			var out []byte
			var hits []Hit
			for p := in; len(p) > 0; {
				n := min(size, len(p))
				o, h := s.Write(p[:n])
				out, hits = append(out, o...), append(hits, h...)
				if s.Held() >= MaxHeld {
					t.Fatalf("holds %d bytes", s.Held())
				}
				p = p[n:]
			}
			o, h := s.Close()
			out, hits = append(out, o...), append(hits, h...)
			if !bytes.Equal(out, wantOut) || !slices.Equal(hits, wantHits) {
				t.Fatalf("%.40q in writes of %d: got %v, want %v", in, size, hits, wantHits)
			}
		}
	}
	// Up to the bound, a value with a 24-bit color change before every
	// character is found.
	var b strings.Builder
	for _, c := range "4111 1111 1111 1111" {
		b.WriteString("\x1b[38;2;255;128;0m")
		b.WriteRune(c)
	}
	b.WriteString("\x1b[0m\n")
	if _, hits := maskSplit(t, m, []byte(b.String()), 100, 200); len(hits) != 1 {
		t.Fatalf("hits %v", hits)
	}
}
