package bastion

import (
	"context"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastionhq/bastion/policy/mask"
	"github.com/bastionhq/bastion/recorder"
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

// frameLog keeps the frames appended to it, payloads copied.
type frameLog struct {
	Recorder
	mu     sync.Mutex
	frames []loggedFrame
}

type loggedFrame struct {
	kind    uint8
	payload string
}

func (l *frameLog) Append(kind uint8, _ uint32, p []byte) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.frames = append(l.frames, loggedFrame{kind, string(p)})
	return uint64(len(l.frames)), nil
}

// maskedInput is a session's input path under every built-in detector,
// with the idle delay given: the client writes to pw, the pump reads src
// and appends to rec, and log keeps what is recorded.
func maskedInput(t *testing.T, idle time.Duration) (*io.PipeReader, *io.PipeWriter, *maskingReader, Recorder, *frameLog) {
	t.Helper()
	m, err := mask.Compile(mask.Profile{Detectors: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	s := &frontSession{masker: m}
	pr, pw := io.Pipe()
	log := &frameLog{}
	src, rec := s.inputFilter(context.Background(), pr, log)
	r := src.(*maskingReader)
	r.idle, r.keyGap = idle, idle
	return pr, pw, r, rec, log
}

// TestInputMasking: what the client sends reaches the target as sent,
// while the input frames hold it masked, each masking a mask frame
// (stream "input") before the input it describes; a value split over two
// writes close together is masked; bytes that could begin a value go
// through after the idle flush; input that does not come through the
// reader (bastion's end-of-file character) is masked whole.
func TestInputMasking(t *testing.T) {
	// A longer idle delay than serve's, so that a loaded machine's
	// scheduling cannot make the pause between the first two writes
	// look idle.
	pr, pw, src, rec, log := maskedInput(t, 200*time.Millisecond)
	sent := []string{"echo 4111 1111 ", "1111 1111 password=hunter2\r", "ls\r", "pa"}
	written := make(chan string, 1)
	go func() {
		io.WriteString(pw, sent[0])
		time.Sleep(2 * time.Millisecond)
		for _, w := range sent[1:] {
			io.WriteString(pw, w)
		}
		// "pa" could begin a password: it goes after the idle delay,
		// with no more input.
		written <- ""
	}()
	// The pump: read, record, forward.
	var forwarded strings.Builder
	buf := make([]byte, 16)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, err := rec.Append(kindInput, 0, buf[:n]); err != nil {
				t.Fatal(err)
			}
			forwarded.Write(buf[:n])
		}
		if written != nil && strings.HasSuffix(forwarded.String(), "pa") {
			<-written
			written = nil
			pw.Close()
		}
		if err != nil {
			break
		}
	}
	if got, want := forwarded.String(), strings.Join(sent, ""); got != want {
		t.Fatalf("forwarded %q, want the bytes as sent %q", got, want)
	}
	var input strings.Builder
	var masks []recorder.Attrs
	var frameOf []int          // the index of the frame holding each input byte
	announced := map[int]int{} // value start → index of its mask frame
	for i, f := range log.frames {
		switch f.kind {
		case kindInput:
			input.WriteString(f.payload)
			for range f.payload {
				frameOf = append(frameOf, i)
			}
		case uint8(recorder.KindMask):
			a, err := recorder.ParseAttrsPayload([]byte(f.payload))
			if err != nil {
				t.Fatal(err)
			}
			masks = append(masks, a)
			for _, p := range strings.Split(a["positions"], ",") {
				off, _, _ := strings.Cut(p, "+")
				n, _ := strconv.Atoi(off)
				announced[n] = i
			}
		}
	}
	for at, i := range announced {
		if at >= len(frameOf) || frameOf[at] < i {
			t.Fatalf("the value at %d is recorded before the mask frame that describes it (%v)", at, log.frames)
		}
	}
	if got, want := input.String(), "echo **** **** **** 1111 password=*******\rls\rpa"; got != want {
		t.Fatalf("recorded input %q, want %q", got, want)
	}
	if len(masks) != 2 || masks[0]["detector"] != "card" || masks[0]["stream"] != "input" || masks[0]["positions"] != "5+19" ||
		masks[1]["detector"] != "password" || masks[1]["positions"] != "34+7" {
		t.Fatalf("mask frames %v", masks)
	}

	// Input that did not come through the reader is masked whole.
	log.frames = nil
	if _, err := rec.Append(kindInput, 0, []byte("4111111111111111\x04")); err != nil {
		t.Fatal(err)
	}
	if len(log.frames) != 2 || log.frames[1].payload != "************1111\x04" || !strings.Contains(log.frames[0].payload, "input") {
		t.Fatalf("frames %q", log.frames)
	}

	// Without a masking profile, input passes as it is.
	plain := &frontSession{}
	if r, rr := plain.inputFilter(context.Background(), pr, log); r != io.Reader(pr) || rr != Recorder(log) {
		t.Fatal("input filtered without a profile")
	}
}

// TestMaskArgv: a command target's argv is masked as its command is kept.
// Through a shell, the command argument is the masked command. Split into
// words, a command that holds a value hides every word that came from it
// (the quoting can move a value's edges); one whose quoting hid a value
// from the masker has each word masked, and says the command must be
// hidden whole.
func TestMaskArgv(t *testing.T) {
	m, err := mask.Compile(mask.Profile{Detectors: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		argv    []string
		command string
		want    []string
		hits    int
		hidden  bool
	}{
		{[]string{"/bin/sh", "-c", "pay 4111 1111 1111 1111"}, "pay 4111 1111 1111 1111",
			[]string{"/bin/sh", "-c", "pay **** **** **** 1111"}, 1, false},
		{[]string{"mysql", "--password=my secret pw"}, "--password='my secret pw'",
			[]string{"mysql", "***********************"}, 1, false},
		{[]string{"psql", "-c", "4111111111111111"}, "-c 4111''111111111111",
			[]string{"psql", "-c", "************1111"}, 1, true},
		{[]string{"psql", "-c", "select 1"}, "-c 'select 1'",
			[]string{"psql", "-c", "select 1"}, 0, false},
	} {
		got, hits, hidden := maskArgv(m, c.argv, 1, c.command)
		if !slices.Equal(got, c.want) || len(hits) != c.hits || hidden != c.hidden {
			t.Errorf("maskArgv(%q, %q) = %q, %d hits, hidden %v; want %q, %d, %v", c.argv, c.command, got, len(hits), hidden, c.want, c.hits, c.hidden)
		}
	}
}

// TestInputMaskingKeys: a key typed on its own after a pause is decided at
// once, not held (a person's typing is not delayed twice); keys a program
// types close together are held as output is, so a value typed that way
// from the second key on is masked.
func TestInputMaskingKeys(t *testing.T) {
	// An idle delay no test waits out: what is released comes from the
	// keys alone.
	_, pw, src, rec, log := maskedInput(t, time.Hour)
	go func() {
		// "p" could begin a password, but it is a key on its own: were
		// it held, the first Read would wait an hour.
		io.WriteString(pw, "p")
	}()
	buf := make([]byte, 64)
	n, err := src.Read(buf)
	if err != nil || string(buf[:n]) != "p" {
		t.Fatalf("first key: %q %v", buf[:n], err)
	}
	rec.Append(kindInput, 0, buf[:n])
	go func() {
		for _, c := range []byte(" 4111111111111111\r") {
			pw.Write([]byte{c})
		}
		pw.Close()
	}()
	var sent strings.Builder
	sent.WriteString("p")
	for {
		n, err := src.Read(buf)
		if n > 0 {
			rec.Append(kindInput, 0, buf[:n])
			sent.Write(buf[:n])
		}
		if err != nil {
			break
		}
	}
	var input strings.Builder
	for _, f := range log.frames {
		if f.kind == kindInput {
			input.WriteString(f.payload)
		}
	}
	if sent.String() != "p 4111111111111111\r" || input.String() != "p ************1111\r" {
		t.Fatalf("sent %q, recorded %q", sent.String(), input.String())
	}
}
