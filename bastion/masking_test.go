package bastion

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/bastionhq/bastion/recorder/mask"
)

// frameKinds keeps the frames appended to it.
type frameKinds struct {
	Recorder
	kinds []uint8
}

func (m *frameKinds) Append(kind uint8, _ uint32, _ []byte) (uint64, error) {
	m.kinds = append(m.kinds, kind)
	return uint64(len(m.kinds)), nil
}

// TestMaskingReader: a card number written in two pieces, with a pause
// between them shorter than the idle flush, is masked; what could begin a
// value is released after the idle flush; a torn-down session ends reads
// at once.
func TestMaskingReader(t *testing.T) {
	m, err := mask.Compile(mask.Profile{Detectors: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	rec := &frameKinds{}
	r := newMaskingReader(done, pr, m, rec, 0, nil)
	go func() {
		io.WriteString(pw, "visa 4111 1111 ")
		time.Sleep(2 * time.Millisecond)
		io.WriteString(pw, "1111 1111 ok\n")
		// A prompt that could begin a value: released after the idle flush.
		io.WriteString(pw, "pa")
	}()
	var got strings.Builder
	buf := make([]byte, 64)
	for !strings.HasSuffix(got.String(), "pa") {
		n, err := r.Read(buf)
		if err != nil {
			t.Fatalf("read: %v (so far %q)", err, got.String())
		}
		got.Write(buf[:n])
	}
	if s := got.String(); strings.Contains(s, "4111 1111 1111 1111") || !strings.Contains(s, "1111 ok\n") {
		t.Fatalf("output %q", s)
	}
	if len(rec.kinds) == 0 {
		t.Fatal("no mask frame recorded")
	}
	close(done)
	if _, err := r.Read(buf); err != errSessionDone {
		t.Fatalf("read after the session ended: %v", err)
	}
	pw.Close()
}

func TestPasswordPrompt(t *testing.T) {
	for in, want := range map[string]bool{
		"Password: ":                       true,
		"[sudo] password for alice: ":      true,
		"Enter passphrase for key 'id': ":  true,
		"login: ":                          false,
		"password changed\r\n$ ":           false,
		"Password for 'https://x@gh.com':": true,
	} {
		if got := passwordPrompt([]byte(in)); got != want {
			t.Errorf("%q: %v, want %v", in, got, want)
		}
	}
}
