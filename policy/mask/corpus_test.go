package mask

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const corpusDir = "../../testdata/mask"

// A fixture is one line of the corpus (see testdata/mask/README.md).
type fixture struct {
	where string // file:line
	input []byte
	want  []Hit  // expected hits, by offset
	out   []byte // expected output, if given
}

// loadCorpus reads every fixture file in testdata/mask.
func loadCorpus(t testing.TB) []fixture {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in %s: %v", corpusDir, err)
	}
	var all []fixture
	for _, file := range files {
		det := strings.TrimSuffix(filepath.Base(file), ".txt")
		if det != "ordinary" && !slices.Contains(builtin, det) {
			t.Fatalf("%s: not named after a detector", file)
		}
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			where := fmt.Sprintf("%s:%d", filepath.Base(file), n)
			if line == "" || line[0] == '#' {
				continue
			}
			if len(line) < 2 || line[1] != ' ' {
				t.Fatalf("%s: want '+ ', '- ' or '= '", where)
			}
			text, err := unescape(line[2:])
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			switch line[0] {
			case '+':
				in, hits, err := parseMarks(text, det)
				if err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				if len(hits) == 0 {
					t.Fatalf("%s: a '+' fixture marks no value", where)
				}
				all = append(all, fixture{where: where, input: in, want: hits})
			case '-':
				if bytes.Contains(text, []byte("{{")) {
					t.Fatalf("%s: a near miss marks a value", where)
				}
				all = append(all, fixture{where: where, input: text})
			case '=':
				if len(all) == 0 || all[len(all)-1].want == nil {
					t.Fatalf("%s: '=' must follow a '+' line", where)
				}
				all[len(all)-1].out = text
			default:
				t.Fatalf("%s: want '+ ', '- ' or '= '", where)
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return all
}

// unescape turns \n \r \t \e \\ and \xHH into bytes; other backslashes stay.
func unescape(s string) ([]byte, error) {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b = append(b, s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'e':
			b = append(b, 0x1b)
		case 'a':
			b = append(b, 0x07)
		case '\\':
			b = append(b, '\\')
		case 'x':
			if i+2 >= len(s) {
				return nil, fmt.Errorf("short \\x escape")
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, err
			}
			b = append(b, byte(v))
			i += 2
		default:
			b = append(b, '\\', s[i])
		}
	}
	return b, nil
}

// parseMarks removes the {{…}} marks from text and returns the hits they
// stand for.
func parseMarks(text []byte, det string) ([]byte, []Hit, error) {
	var in []byte
	var hits []Hit
	for {
		open := bytes.Index(text, []byte("{{"))
		if open < 0 {
			return append(in, text...), hits, nil
		}
		in = append(in, text[:open]...)
		text = text[open+2:]
		end := bytes.Index(text, []byte("}}"))
		if end < 0 {
			return nil, nil, fmt.Errorf("unclosed {{")
		}
		value, d := text[:end], det
		if name, rest, ok := bytes.Cut(value, []byte("|")); ok && slices.Contains(builtin, string(name)) {
			value, d = rest, string(name)
		}
		hits = append(hits, Hit{Detector: d, Offset: int64(len(in)), Length: len(value)})
		in = append(in, value...)
		text = text[end+2:]
	}
}

// maskAll masks input in one Write and a Close.
func maskAll(m *Masker, input []byte) ([]byte, []Hit) {
	s := m.NewStream()
	out, hits := s.Write(input)
	out, hits = bytes.Clone(out), slices.Clone(hits)
	o, h := s.Close()
	return append(out, o...), append(hits, h...)
}

// maskSplit masks input written in the pieces that cuts make, checking
// the hold-back after every Write: less than HoldBack, or MaxHeld if the
// input holds an ESC.
func maskSplit(t testing.TB, m *Masker, input []byte, cuts ...int) ([]byte, []Hit) {
	s := m.NewStream()
	var out []byte
	var hits []Hit
	// Without escape sequences, only text is held.
	limit := HoldBack
	if bytes.IndexByte(input, 0x1b) >= 0 {
		limit = MaxHeld
	}
	prev := 0
	for _, c := range append(cuts, len(input)) {
		o, h := s.Write(input[prev:c])
		out, hits = append(out, o...), append(hits, h...)
		if s.Held() >= limit {
			t.Fatalf("holds %d bytes after writing %q", s.Held(), input[:c])
		}
		prev = c
	}
	o, h := s.Close()
	return append(out, o...), append(hits, h...)
}

func allMasker(t testing.TB) *Masker {
	m, err := Compile(Profile{Name: "all", Detectors: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCorpus checks every fixture with the "all" profile, and reports
// precision and recall per detector. Hits count as true positives only
// with the right detector, offset and length.
func TestCorpus(t *testing.T) {
	m := allMasker(t)
	type score struct{ tp, fp, fn int }
	scores := map[string]*score{}
	for _, d := range builtin {
		scores[d] = &score{}
	}
	for _, fx := range loadCorpus(t) {
		out, hits := maskAll(m, fx.input)
		for _, h := range hits {
			if slices.Contains(fx.want, h) {
				scores[h.Detector].tp++
			} else {
				scores[h.Detector].fp++
				t.Errorf("%s: unexpected %s hit at %d+%d: %q", fx.where, h.Detector, h.Offset, h.Length,
					fx.input[h.Offset:h.Offset+int64(h.Length)])
			}
		}
		for _, w := range fx.want {
			if !slices.Contains(hits, w) {
				scores[w.Detector].fn++
				t.Errorf("%s: missed %s at %d+%d: %q (got %v)", fx.where, w.Detector, w.Offset, w.Length,
					fx.input[w.Offset:w.Offset+int64(w.Length)], hits)
			}
		}
		if len(out) != len(fx.input) {
			t.Errorf("%s: output is %d bytes, input %d", fx.where, len(out), len(fx.input))
		}
		if fx.out != nil && !bytes.Equal(out, fx.out) {
			t.Errorf("%s: output\n got %q\nwant %q", fx.where, out, fx.out)
		}
		if fx.want == nil && !bytes.Equal(out, fx.input) {
			t.Errorf("%s: a near miss was changed: %q", fx.where, out)
		}
		for _, w := range fx.want {
			value := fx.input[w.Offset : w.Offset+int64(w.Length)]
			if bytes.Contains(out, value) {
				t.Errorf("%s: output still holds %q", fx.where, value)
			}
		}
	}
	t.Logf("%-16s %5s %5s %5s %9s %7s", "detector", "TP", "FP", "FN", "precision", "recall")
	for _, d := range builtin {
		sc := scores[d]
		if sc.tp+sc.fn == 0 {
			t.Errorf("%s: no fixture must be masked by it", d)
			continue
		}
		precision := float64(sc.tp) / float64(max(sc.tp+sc.fp, 1))
		recall := float64(sc.tp) / float64(sc.tp+sc.fn)
		t.Logf("%-16s %5d %5d %5d %9.3f %7.3f", d, sc.tp, sc.fp, sc.fn, precision, recall)
		if precision != 1 || recall != 1 {
			t.Errorf("%s: precision %.3f, recall %.3f; want 1 on the corpus", d, precision, recall)
		}
	}
}

// TestCorpusSplits checks that every fixture masks the same at every split
// point, byte by byte, and at a sample of three-way splits, as in one
// Write.
func TestCorpusSplits(t *testing.T) {
	m := allMasker(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, fx := range loadCorpus(t) {
		wantOut, wantHits := maskAll(m, fx.input)
		check := func(how string, cuts ...int) {
			out, hits := maskSplit(t, m, fx.input, cuts...)
			if !bytes.Equal(out, wantOut) || !slices.Equal(hits, wantHits) {
				t.Fatalf("%s: split %s %v:\n got %q %v\nwant %q %v", fx.where, how, cuts, out, hits, wantOut, wantHits)
			}
		}
		n := len(fx.input)
		for i := 0; i <= n; i++ {
			check("at", i)
		}
		every := make([]int, 0, n)
		for i := 1; i < n; i++ {
			every = append(every, i)
		}
		check("byte by byte", every...)
		for range 50 {
			a, b := rng.IntN(n+1), rng.IntN(n+1)
			check("three ways", min(a, b), max(a, b))
		}
	}
}
