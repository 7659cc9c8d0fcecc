package playback

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/recordertest"
	"github.com/bastionhq/bastion/storage"
)

// bigRecording records size bytes of output into a new journal at path, in
// chunks of 32 KiB, chunk i at offset i*10ms, each chunk naming itself.
// It returns the session ID and the number of chunks.
func bigRecording(t testing.TB, path string, size int) (recorder.SessionID, int) {
	ctx := context.Background()
	key, err := recorder.ParseJournalKey(fixtureSignerKey)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: base}
	j := recordertest.NewJournalWith(t, recordertest.Options{Path: path, Storage: storage.Options{Synchronous: storage.SyncNormal},
		Journal: recorder.Options{Key: key, Now: clock.Now}})
	defer j.Close()
	s, err := j.StartSession(ctx, recorder.SessionInfo{})
	if err != nil {
		t.Fatal(err)
	}
	n := size / (32 << 10)
	for i := 0; i < n; i++ {
		clock.set(time.Duration(i)*10*time.Millisecond, base)
		if _, err := s.Append(recorder.KindOutput, 0, chunk(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.End(ctx, recorder.Attrs{"reason": "exited"}); err != nil {
		t.Fatal(err)
	}
	return recorder.SessionID(s.ID()), n
}

// chunk is 32 KiB that says which chunk it is.
func chunk(i int) []byte {
	line := fmt.Sprintf("chunk %08d\n", i)
	return bytes.Repeat([]byte(line), (32<<10)/len(line)+1)[:32<<10]
}

// firstWrite records when the first byte arrived and how many did.
type firstWrite struct {
	mu    sync.Mutex
	first time.Time
	head  []byte
	n     int64
}

func (w *firstWrite) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.first.IsZero() {
		w.first = time.Now()
	}
	if len(w.head) < 64<<10 {
		w.head = append(w.head, p[:min(len(p), 64<<10-len(w.head))]...)
	}
	w.n += int64(len(p))
	return len(p), nil
}

func TestPlayFromMiddle(t *testing.T) {
	size := 64 << 20
	if testing.Short() {
		size = 4 << 20
	}
	path := filepath.Join(t.TempDir(), "big.db")
	id, n := bigRecording(t, path, size)
	st := openStore(t, path)
	v := verifier(t).Verifier
	mid := n / 2
	// An offset between chunk mid and mid+1 starts with chunk mid+1: the
	// frame at or before the offset began before it.
	from := time.Duration(mid)*10*time.Millisecond + 5*time.Millisecond
	var w firstWrite
	res, err := Play(context.Background(), st, id, &w, Options{Verifier: v, From: from})
	_ = res
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(ClearScreen), chunk(mid + 1)[:1000]...)
	if !bytes.HasPrefix(w.head, want) {
		t.Errorf("output starts %q, want %q", w.head[:min(len(w.head), 80)], want[:80])
	}
	// Frames may coalesce chunks, so count from the frame boundary.
	if got, max := w.n, int64(len(ClearScreen))+int64(n-mid-1)*(32<<10); got > max || got < max/2 {
		t.Errorf("wrote %d bytes, want the rest of the session, about %d", got, max)
	}
}

// BenchmarkPlaySeek measures how long "play --from" takes to write its
// first byte in the middle of a recording of BASTION_BENCH_SEEK_MIB MiB
// (default 1024; the recording is made once, which takes a while).
func BenchmarkPlaySeek(b *testing.B) {
	if testing.Short() {
		b.Skip("makes a 1 GiB recording")
	}
	mib := 1024
	if s := os.Getenv("BASTION_BENCH_SEEK_MIB"); s != "" {
		fmt.Sscan(s, &mib)
	}
	path := filepath.Join(b.TempDir(), "big.db")
	id, n := bigRecording(b, path, mib<<20)
	st := openStore(b, path)
	v := verifier(b).Verifier
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		// A different offset each time, so no page is warm by design.
		at := time.Duration((n/4)+(i*7919)%(n/2)) * 10 * time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		w := &firstWrite{}
		stopAt := &stopAfterFirst{w: w, cancel: cancel}
		start := time.Now()
		Play(ctx, st, id, stopAt, Options{Verifier: v, From: at})
		cancel()
		if stopAt.frameAt.IsZero() {
			b.Fatal("no frame written")
		}
		total += stopAt.frameAt.Sub(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/first-byte")
}

// stopAfterFirst cancels playback once the first frame after the clear
// screen is written, and notes when that was.
type stopAfterFirst struct {
	w       *firstWrite
	cancel  func()
	writes  int
	frameAt time.Time
}

var errEnough = errors.New("enough")

func (s *stopAfterFirst) Write(p []byte) (int, error) {
	s.w.Write(p)
	s.writes++
	if s.writes >= 2 {
		s.frameAt = time.Now()
		s.cancel()
		return 0, errEnough
	}
	return len(p), nil
}

func TestPlayFollow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "live.db")
	key, err := recorder.ParseJournalKey(fixtureSignerKey)
	if err != nil {
		t.Fatal(err)
	}
	j := recordertest.NewJournalWith(t, recordertest.Options{Path: path, Journal: recorder.Options{Key: key}})
	defer j.Close()
	s, err := j.StartSession(ctx, recorder.SessionInfo{})
	if err != nil {
		t.Fatal(err)
	}
	appendWait := func(p string) {
		seq, err := s.Append(recorder.KindOutput, 0, []byte(p))
		if err == nil {
			err = s.Wait(ctx, seq)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	appendWait("before\n")
	rst := openStore(t, path)
	out := &syncBuffer{}
	done := make(chan error, 1)
	var res *Result
	go func() {
		var err error
		res, err = Play(ctx, rst, recorder.SessionID(s.ID()), out, Options{Verifier: verifier(t).Verifier, Follow: true, Speed: 1})
		done <- err
	}()
	waitFor(t, out, "before\n")
	for i := 0; i < 3; i++ {
		line := fmt.Sprintf("live %d\n", i)
		appendWait(line)
		waitFor(t, out, line)
	}
	if err := s.End(ctx, recorder.Attrs{"reason": "exited"}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !res.Ended || out.String() != "before\nlive 0\nlive 1\nlive 2\n" {
		t.Errorf("ended %v, output %q", res.Ended, out.String())
	}
}

// BenchmarkFollowLatency measures the time from a frame's commit to its
// output by a following player (polling every 20ms, the default).
func BenchmarkFollowLatency(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(b.TempDir(), "live.db")
	key, _ := recorder.ParseJournalKey(fixtureSignerKey)
	wst, err := storage.OpenSQLite(ctx, path, storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer wst.Close()
	j, err := recorder.Open(ctx, wst, recorder.Options{Key: key})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	s, err := j.StartSession(ctx, recorder.SessionInfo{})
	if err != nil {
		b.Fatal(err)
	}
	rst := openStore(b, path)
	out := &syncBuffer{}
	go Play(ctx, rst, recorder.SessionID(s.ID()), out, Options{Verifier: verifier(b).Verifier, Follow: true, Speed: 1})
	var total, worst time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		line := fmt.Sprintf("line %d\n", i)
		seq, _ := s.Append(recorder.KindOutput, 0, []byte(line))
		s.Wait(ctx, seq)
		committed := time.Now()
		for !strings.HasSuffix(out.String(), line) {
			time.Sleep(200 * time.Microsecond)
		}
		d := time.Since(committed)
		total += d
		worst = max(worst, d)
		// Frames spread in time, as a live session's are.
		time.Sleep(time.Duration(i%7) * 3 * time.Millisecond)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/latency")
	b.ReportMetric(float64(worst.Microseconds())/1000, "ms/worst")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, out *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q never showed %q", out.String(), s)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPlayRefusesBroken changes one output byte of the fixture: play
// refuses the session, saying which segment does not verify, and with
// Force plays it and lists the problem.
func TestPlayRefusesBroken(t *testing.T) {
	path := copyFixture(t)
	st := openStore(t, path)
	shell, _ := fixtureSessions(t, st)
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE frames SET payload = CAST('card: 4111-1111-1111-1111' || char(13, 10) AS BLOB) WHERE CAST(payload AS TEXT) LIKE 'card:%'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	var out bytes.Buffer
	v := verifier(t).Verifier
	_, err = Play(context.Background(), st, shell, &out, Options{Verifier: v})
	if !errors.Is(err, recorder.ErrSessionBroken) || !strings.Contains(err.Error(), "does not match the head committed by leaf") {
		t.Fatalf("err = %v, want a broken chain", err)
	}
	if strings.Contains(out.String(), "4111") {
		t.Errorf("the changed frame was shown: %q", out.String())
	}
	out.Reset()
	res, err := Play(context.Background(), st, shell, &out, Options{Verifier: v, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 1 || !strings.Contains(out.String(), "4111") {
		t.Errorf("forced: problems %q, output %q", res.Problems, out.String())
	}
}

func TestDescribe(t *testing.T) {
	st := openStore(t, copyFixture(t))
	shell, execID := fixtureSessions(t, st)
	ctx := context.Background()
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	v := verifier(t).Verifier
	rec, err := recorder.OpenSession(ctx, snap, shell, recorder.OpenOptions{Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sum, err := Describe(ctx, snap, rec, func(l Line) { lines = append(lines, l.Text) })
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, c := range sum.Commands {
		cmds = append(cmds, fmt.Sprintf("%s %v %v", c.Text, c.Reconstructed, c.Offset))
	}
	if got, want := strings.Join(cmds, "|"), "ls true 1s|cat card.txt true 4s|exit true 10s"; got != want {
		t.Errorf("commands %q, want %q", got, want)
	}
	if sum.Masked["pan"] != 1 || sum.Exit["status"] != "0" {
		t.Errorf("masked %v, exit %v", sum.Masked, sum.Exit)
	}
	if got := strings.Join(lines, "|"); !strings.Contains(got, "café.txt  notes.md") || strings.Contains(got, "\x1b") {
		t.Errorf("lines %q", got)
	}
	rec, err = recorder.OpenSession(ctx, snap, execID, recorder.OpenOptions{Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	sum, err = Describe(ctx, snap, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Commands) != 1 || sum.Commands[0].Text != "uname -a" || sum.Commands[0].Reconstructed || sum.Exit["status"] != "1" {
		t.Errorf("exec summary %+v", sum)
	}
}

func TestLineEditor(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"ls -l\r", "ls -l false"},
		{"lss\x7f -l\r", "ls -l false"},
		{"rm -rf /\x15echo hi\r", "echo hi false"},
		{"echo one two\x17three\r", "echo one three false"},
		{"sudo reboot\x03ls\r", "ls false"},
		{"\x1b[A\r", " true"},
		{"git st\tus\r", "git stus true"},
		{"\x1b[200~paste me\x1b[201~\r", "paste me false"},
		{"caf\xc3\xa9\x7fe\r", "cafe false"},
	} {
		var e lineEditor
		var got []string
		for _, c := range e.feed([]byte(tc.in), 0) {
			got = append(got, fmt.Sprintf("%s %v", c.Text, c.Uncertain))
		}
		if strings.Join(got, "|") != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestIncompleteTail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"abc", 3}, {"caf\xc3", 3}, {"caf\xc3\xa9", 5}, {"\xe2\x82", 0}, {"\xe2\x82\xac", 3},
		{"\xf0\x9f\x98", 0}, {"x\xff", 2}, {"\xa9", 1},
	} {
		if got := incompleteTail([]byte(tc.in)); got != tc.want {
			t.Errorf("incompleteTail(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
	if got := validUTF8([]byte("a\xffb\xc3")); got != "a\ufffdb\ufffd" {
		t.Errorf("validUTF8 = %q", got)
	}
	if got := seconds(1_234_567_891); got != "1.234567" {
		t.Errorf("seconds = %q", got)
	}
}

// Without a terminal, a bare line feed is written as CR LF, a CR LF stays
// as it is (also when a frame ends between the two), and each stream
// keeps its own state.
func TestCasterCRLF(t *testing.T) {
	a := &caster{noTerminal: true, cr: map[streamKey]bool{}}
	out, errs := streamKey{kind: recorder.KindOutput}, streamKey{kind: recorder.KindStderr}
	for _, c := range []struct {
		k        streamKey
		in, want string
	}{
		{out, "a\nb\r\nc\r", "a\r\nb\r\nc\r"},
		{errs, "\nx", "\r\nx"},
		{out, "\nd\n", "\nd\r\n"},
		{out, "", ""},
		{out, "\n\n", "\r\n\r\n"},
	} {
		if got := a.crlf(c.k, c.in); got != c.want {
			t.Errorf("crlf(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
