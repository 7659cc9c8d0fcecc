package front

import (
	"context"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastionhq/bastion/bastion/pump"
	"github.com/bastionhq/bastion/policy/mask"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/recordertest"
)

// frameLog is a session of a real journal that also keeps the frames
// appended to it, payloads copied, in the order of their appends.
type frameLog struct {
	*recorder.Session
	mu     sync.Mutex
	frames []loggedFrame
}

type loggedFrame struct {
	kind    recorder.Kind
	payload string
}

func (l *frameLog) Append(kind recorder.Kind, channel uint32, p []byte) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	seq, err := l.Session.Append(kind, channel, p)
	if err == nil {
		l.frames = append(l.frames, loggedFrame{kind, string(p)})
	}
	return seq, err
}

func (l *frameLog) logged() []loggedFrame {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.frames)
}

// newFrameLog starts a session in a new journal (a SQLite file in a
// temporary directory).
func newFrameLog(t *testing.T) *frameLog {
	t.Helper()
	j := recordertest.NewJournal(t)
	sess, err := j.StartSession(context.Background(), recorder.SessionInfo{Attrs: recorder.Attrs{"kind": "test"}})
	if err != nil {
		t.Fatal(err)
	}
	return &frameLog{Session: sess}
}

// delivered is a stream's destination: it keeps what it is given and
// tells waitFor.
type delivered struct {
	mu      sync.Mutex
	b       []byte
	changed chan struct{}
}

func newDelivered() *delivered { return &delivered{changed: make(chan struct{})} }

func (d *delivered) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.b = append(d.b, p...)
	close(d.changed)
	d.changed = make(chan struct{})
	return len(p), nil
}

func (d *delivered) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return string(d.b)
}

// waitFor waits until what was delivered ends with suffix.
func (d *delivered) waitFor(t *testing.T, suffix string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		d.mu.Lock()
		got, changed := string(d.b), d.changed
		d.mu.Unlock()
		if strings.HasSuffix(got, suffix) {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("delivered %q, never ending in %q", got, suffix)
		}
	}
}

// TestOutputMasking: a card number written in two pieces, with a pause
// between them shorter than the idle flush, is masked in what is recorded
// and shown; what could begin a value is released after the idle flush;
// once the stream is closed, nothing more is recorded or shown.
func TestOutputMasking(t *testing.T) {
	m, err := mask.Compile(mask.Profile{Detectors: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	log := newFrameLog(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	f := newOutputMasking(m, 0, nil)
	// Longer than serve's, so that a loaded machine's scheduling cannot
	// make the pause between the two pieces look idle.
	f.idle = 200 * time.Millisecond
	out := newDelivered()
	st := pump.New(context.Background(), log, pump.Options{}).Copy(out, pr, recorder.KindOutput, 0, pump.StreamOptions{Filter: f})
	go func() {
		io.WriteString(pw, "visa 4111 1111 ")
		time.Sleep(2 * time.Millisecond)
		io.WriteString(pw, "1111 1111 ok\n")
		// A prompt that could begin a value: released after the idle flush.
		io.WriteString(pw, "pa")
	}()
	out.waitFor(t, "pa")
	if s := out.String(); strings.Contains(s, "4111 1111 1111 1111") || !strings.Contains(s, "1111 ok\n") {
		t.Fatalf("output %q", s)
	}
	var recorded strings.Builder
	masks := 0
	for _, fr := range log.logged() {
		switch fr.kind {
		case recorder.KindOutput:
			recorded.WriteString(fr.payload)
		case recorder.KindMask:
			masks++
		}
	}
	if recorded.String() != out.String() {
		t.Fatalf("recorded %q, shown %q", recorded.String(), out.String())
	}
	if masks == 0 {
		t.Fatal("no mask frame recorded")
	}
	st.Close()
	io.WriteString(pw, "after the end")
	<-st.Done()
	for _, fr := range log.logged() {
		if strings.Contains(fr.payload, "after") {
			t.Fatalf("recorded %q after the stream was closed", fr.payload)
		}
	}
	if strings.Contains(out.String(), "after") {
		t.Fatalf("shown %q after the stream was closed", out.String())
	}
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

// maskedInput is a session's input stream under every built-in detector,
// with the idle delay given, through the pump: the client writes to pw,
// the target receives what out keeps, and log keeps what is recorded.
func maskedInput(t *testing.T, idle time.Duration) (*io.PipeWriter, *pump.Stream, *delivered, *frameLog) {
	t.Helper()
	m, err := mask.Compile(mask.Profile{Detectors: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	s := &frontSession{masker: m}
	f := s.filter(recorder.KindInput, 0).(*maskFilter)
	f.idle, f.keyGap = idle, idle
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	log := newFrameLog(t)
	out := newDelivered()
	st := pump.New(context.Background(), log, pump.Options{}).Copy(out, pr, recorder.KindInput, 0, pump.StreamOptions{Filter: f})
	return pw, st, out, log
}

// TestInputMasking: what the client sends reaches the target as sent,
// while the input frames hold it masked, each masking a mask frame
// (stream "input") before the input it describes; a value split over two
// writes close together is masked; bytes that could begin a value go
// through after the idle flush.
func TestInputMasking(t *testing.T) {
	// A longer idle delay than serve's, so that a loaded machine's
	// scheduling cannot make the pause between the first two writes
	// look idle.
	pw, st, out, log := maskedInput(t, 200*time.Millisecond)
	sent := []string{"echo 4111 1111 ", "1111 1111 password=hunter2\r", "ls\r", "pa"}
	go func() {
		io.WriteString(pw, sent[0])
		time.Sleep(2 * time.Millisecond)
		for _, w := range sent[1:] {
			io.WriteString(pw, w)
		}
	}()
	// "pa" could begin a password: it goes after the idle delay, with
	// no more input.
	out.waitFor(t, "pa")
	pw.Close()
	<-st.Done()
	if got, want := out.String(), strings.Join(sent, ""); got != want {
		t.Fatalf("forwarded %q, want the bytes as sent %q", got, want)
	}
	frames := log.logged()
	var input strings.Builder
	var masks []recorder.Attrs
	var frameOf []int          // the index of the frame holding each input byte
	announced := map[int]int{} // value start → index of its mask frame
	for i, f := range frames {
		switch f.kind {
		case recorder.KindInput:
			input.WriteString(f.payload)
			for range f.payload {
				frameOf = append(frameOf, i)
			}
		case recorder.KindMask:
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
			t.Fatalf("the value at %d is recorded before the mask frame that describes it (%v)", at, frames)
		}
	}
	if got, want := input.String(), "echo **** **** **** 1111 password=*******\rls\rpa"; got != want {
		t.Fatalf("recorded input %q, want %q", got, want)
	}
	if len(masks) != 2 || masks[0]["detector"] != "card" || masks[0]["stream"] != "input" || masks[0]["positions"] != "5+19" ||
		masks[1]["detector"] != "password" || masks[1]["positions"] != "34+7" {
		t.Fatalf("mask frames %v", masks)
	}

	// Without a masking profile, input passes as it is.
	plain := &frontSession{}
	if f := plain.filter(recorder.KindInput, 0); f != nil {
		t.Fatalf("input filtered without a profile: %T", f)
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
	pw, st, out, log := maskedInput(t, time.Hour)
	// "p" could begin a password, but it is a key on its own: were it
	// held, it would wait an hour.
	io.WriteString(pw, "p")
	out.waitFor(t, "p")
	go func() {
		for _, c := range []byte(" 4111111111111111\r") {
			pw.Write([]byte{c})
		}
		pw.Close()
	}()
	<-st.Done()
	var input strings.Builder
	for _, f := range log.logged() {
		if f.kind == recorder.KindInput {
			input.WriteString(f.payload)
		}
	}
	if out.String() != "p 4111111111111111\r" || input.String() != "p ************1111\r" {
		t.Fatalf("sent %q, recorded %q", out.String(), input.String())
	}
}
