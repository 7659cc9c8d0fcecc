package mask

import (
	"bytes"
	"slices"
	"testing"
)

// FuzzMask feeds arbitrary output, split at arbitrary points, to a stream
// with every built-in detector and a custom rule. It checks that masking
// never panics, preserves length, gives the same output and hits however
// the input is split, never holds back HoldBack bytes or more (MaxHeld
// with escape sequences), and never lets out a value it detected: every
// value the one-shot masker finds in the input is absent from the output,
// unless the input also holds it where nothing was detected. With Flush
// calls between the pieces, the output keeps the input's length.
func FuzzMask(f *testing.F) {
	for _, fx := range loadCorpus(f) {
		f.Add(fx.input, uint16(len(fx.input)/2), uint16(len(fx.input)/3), false)
	}
	f.Add([]byte("\x1b[31m4111 1111 1111 1111\x1b[0m EMP-123456"), uint16(9), uint16(20), true)
	f.Add([]byte("\x1b]0;title\x07password=x\x1b[0m"), uint16(3), uint16(12), false)
	m, err := Compile(Profile{Detectors: []string{"all"}, Custom: []CustomRule{
		{Name: "employee-id", Pattern: `EMP-\d{6}`, Keep: 2},
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, input []byte, a, b uint16, flush bool) {
		cut1 := min(int(a), len(input))
		cut2 := min(int(b), len(input))
		cut1, cut2 = min(cut1, cut2), max(cut1, cut2)

		wantOut, wantHits := maskAll(m, input)
		if len(wantOut) != len(input) {
			t.Fatalf("output %d bytes for %d", len(wantOut), len(input))
		}
		if !flush {
			out, hits := maskSplit(t, m, input, cut1, cut2)
			if !bytes.Equal(out, wantOut) || !slices.Equal(hits, wantHits) {
				t.Fatalf("split at %d, %d:\n got %q %v\nwant %q %v", cut1, cut2, out, hits, wantOut, wantHits)
			}
		} else {
			s := m.NewStream()
			var out []byte
			for _, p := range [][]byte{input[:cut1], input[cut1:cut2], input[cut2:]} {
				o, _ := s.Write(p)
				out = append(out, o...)
				o, _ = s.Flush()
				out = append(out, o...)
			}
			o, _ := s.Close()
			out = append(out, o...)
			if len(out) != len(input) {
				t.Fatalf("with flushes: output %d bytes for %d", len(out), len(input))
			}
		}

		covered := make([]bool, len(input))
		for _, h := range wantHits {
			if h.Offset < 0 || h.Length <= 0 || h.Offset+int64(h.Length) > int64(len(input)) {
				t.Fatalf("hit out of range: %+v", h)
			}
			for k := h.Offset; k < h.Offset+int64(h.Length); k++ {
				covered[k] = true
			}
		}
		for _, h := range wantHits {
			value := input[h.Offset : h.Offset+int64(h.Length)]
			if len(value) < 6 || !bytes.Contains(wantOut, value) {
				continue
			}
			// Allowed only if the same bytes appear uncovered in the input.
			found := false
			for k := 0; k+len(value) <= len(input) && !found; k++ {
				if bytes.Equal(input[k:k+len(value)], value) && !slices.Contains(covered[k:k+len(value)], true) {
					found = true
				}
			}
			if !found {
				t.Fatalf("%s value %q is in the output %q", h.Detector, value, wantOut)
			}
		}
	})
}
