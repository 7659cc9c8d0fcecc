package bastion

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/mask"
	"github.com/bastionhq/bastion/recorder"
)

// maskIdle is how long masked output may be held back waiting for the
// rest of a value that could be a secret: after this long with no more
// output, what is held is released (masked as far as it is complete).
const maskIdle = 10 * time.Millisecond

// maskInputIdle is the same for what the client sends. It is shorter:
// what input holds back is held again on its way back as the target's
// echo, so a key that could begin a value waits both delays, 15 ms at
// most; and what input's hold-back is for, the pieces of one write (a
// paste, an agent's line) or keys a program types, come closer together.
const maskInputIdle = 5 * time.Millisecond

// maskKeyGap tells a key typed on its own from keys a program types: a
// one-byte write more than this long after the previous input is a key
// on its own, decided at once rather than held (see maskingReader). A
// program that writes a string key by key writes its keys microseconds
// apart, and they arrive so; a person's come tens of milliseconds apart.
const maskKeyGap = time.Millisecond

// maskers compiles each masking profile once (a profile changed by a
// reload is compiled again).
type maskers struct {
	mu sync.Mutex
	m  map[string]*mask.Masker // guarded by mu; by the profile's content
}

// get returns the masker of the profile called name in pol: one of its
// masking_profile blocks, or a built-in profile.
func (ms *maskers) get(pol *policy.Policy, name string) (*mask.Masker, error) {
	if pol == nil {
		return nil, errors.New("no policy is in force")
	}
	p, ok := pol.MaskingProfile(name)
	if !ok {
		return nil, fmt.Errorf("masking profile %q does not exist in the policy in force", name)
	}
	return ms.compile(p)
}

// text returns the masker for text that belongs to no session, or to a
// session whose role names no profile: the policy's text_masking (every
// built-in detector unless the policy says otherwise); nil when the
// policy turns it off. It fails closed: a profile that cannot be
// compiled (the policy's load checked it, so this is a bug) masks with
// every built-in detector.
func (ms *maskers) text(pol *policy.Policy) *mask.Masker {
	p, ok := pol.TextMaskingProfile()
	if !ok {
		return nil
	}
	m, err := ms.compile(p)
	if err != nil {
		return mask.All()
	}
	return m
}

// compile returns p compiled, once per content.
func (ms *maskers) compile(p mask.Profile) (*mask.Masker, error) {
	key, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m, ok := ms.m[string(key)]; ok {
		return m, nil
	}
	m, err := mask.Compile(p)
	if err != nil {
		return nil, err
	}
	if ms.m == nil {
		ms.m = map[string]*mask.Masker{}
	}
	ms.m[string(key)] = m
	return m, nil
}

// textMasker masks the text of requests that belong to no session yet
// (a refused command).
func (f *front) textMasker() *mask.Masker { return f.maskers.text(f.currentPolicy()) }

// textMasker masks the text a session's leaves and frames keep (its
// command, subsystem, environment): the role's masking profile, or, if
// the role names none, the policy's text_masking.
func (s *frontSession) textMasker() *mask.Masker {
	if s.masker != nil {
		return s.masker
	}
	return s.f.textMasker()
}

// maskArgv masks the argument vector argv that a command target runs
// for the exec request command (the target's own argv, then what
// execArgv made of the command), consistently with how the command itself
// is kept:
//
//   - through a shell (… -c COMMAND), the last argument is the command,
//     masked as the command is;
//   - split into words, when the command holds a value, every word that
//     came from it is hidden whole: the command's quoting can move a
//     value's edges (--password='my secret pw' is one word), so only the
//     command, masked as written, shows them;
//   - split into words, when the command holds none, each word is masked
//     on its own, for a value the quoting hid from the command line
//     (4111”1111…); then hidden is true, and the command must be hidden
//     whole, as it would otherwise keep that value.
//
// It returns the masked argv, what was masked in it, and hidden.
func maskArgv(m *mask.Masker, argv []string, own int, command string) (masked []string, hits []mask.Hit, hidden bool) {
	if m == nil || own > len(argv) {
		return argv, nil, false
	}
	masked = slices.Clone(argv)
	cmd, cmdHits := m.Text(command)
	words := masked[own:]
	if len(words) == 2 && words[0] == "-c" && words[1] == command {
		words[1] = cmd
		return masked, cmdHits, false
	}
	if len(cmdHits) > 0 {
		for i, w := range words {
			words[i] = strings.Repeat("*", len(w))
		}
		return masked, cmdHits, false
	}
	for i, w := range words {
		mw, h := m.Text(w)
		words[i] = mw
		hits = append(hits, h...)
	}
	return masked, hits, len(hits) > 0
}

// hideAll is what a command hidden whole because of hits reports: one
// value per hit, each spanning the whole command (where in it is not
// known).
func hideAll(hits []mask.Hit, n int) []mask.Hit {
	out := make([]mask.Hit, len(hits))
	for i, h := range hits {
		out[i] = mask.Hit{Detector: h.Detector, Offset: 0, Length: n}
	}
	return out
}

// recordMasks records one mask frame per detector on channel, before the
// frame holding the bytes it describes: stream says what they are ("" for
// the target's output on channel, "input", "exec" for the exec command,
// "env" for the environment), and found holds, by detector, one entry per
// value masked, under field: offset+length in the stream or payload
// ("positions"), or the variables' names ("keys").
func recordMasks(rec Recorder, channel uint32, stream, field string, found map[string][]string) error {
	for _, d := range slices.Sorted(maps.Keys(found)) {
		a := recorder.Attrs{"detector": d, "count": strconv.Itoa(len(found[d])), field: strings.Join(found[d], ",")}
		if stream != "" {
			a["stream"] = stream
		}
		payload, err := recorder.EncodeAttrs(a)
		if err != nil {
			return err
		}
		if _, err := rec.Append(uint8(recorder.KindMask), channel, payload); err != nil {
			return err
		}
	}
	return nil
}

// positions lists hits by detector as offset+length entries.
func positions(hits []mask.Hit) map[string][]string {
	found := map[string][]string{}
	for _, h := range hits {
		found[h.Detector] = append(found[h.Detector], strconv.FormatInt(h.Offset, 10)+"+"+strconv.Itoa(h.Length))
	}
	return found
}

// maskingReader masks what src yields, on the target-to-client path,
// before it is recorded: what a Read returns is what the journal holds and
// the client sees. Each masking is a frame of kind mask on the same
// channel, recorded before the masked bytes (detector, count, and the
// stream offsets and lengths of the values, never the values).
//
// A value split across reads of src is still masked: the stream holds
// back a bounded tail that could begin one, and releases it once it is
// decided, or after maskIdle with no more output. Reads of src happen on
// one goroutine, one at a time and only when the caller asks, so src's
// errors (deadlines included) reach the caller unchanged.
//
// On the client-to-target path (input), Read returns the bytes as sent,
// not masked: the target receives exactly what the client sent. Each
// Read hands released, which the recorder side of inputMasking keeps,
// the bytes it returns with their masked copy, for the journal.
type maskingReader struct {
	src     io.Reader
	stream  *mask.Stream
	rec     Recorder
	channel uint32
	prompt  *promptWatch // nil unless input at password prompts is redacted

	idle   time.Duration // how long held bytes wait for more: maskIdle, or maskInputIdle
	keyGap time.Duration // input: maskKeyGap

	// Input only: released is given each Read's bytes as sent and as
	// masked; raw holds the bytes sent that the stream still holds
	// back, pendingRaw those released but not yet returned.
	released   func(sent, masked []byte)
	raw        []byte
	pendingRaw []byte
	lastInput  time.Time // when the last bytes were read

	done    <-chan struct{} // closed when the session is torn down
	asked   chan int        // a read of up to n bytes is wanted
	results chan readResult
	reading bool   // a read of src is outstanding
	pending []byte // masked bytes not yet returned
	end     error  // src's terminal error, once the stream is flushed
	buf     []byte
}

type readResult struct {
	data []byte
	err  error
}

// newMaskingReader starts a maskingReader; its goroutine ends at src's
// first error (timeouts aside) or when done is closed.
func newMaskingReader(done <-chan struct{}, src io.Reader, m *mask.Masker, rec Recorder, channel uint32, prompt *promptWatch) *maskingReader {
	r := &maskingReader{
		src: src, stream: m.NewStream(), rec: rec, channel: channel, prompt: prompt, done: done, idle: maskIdle,
		asked: make(chan int), results: make(chan readResult, 1), buf: make([]byte, 32<<10),
	}
	go r.loop(done)
	return r
}

// loop reads src whenever Read asks, and stops after its first error, or
// when done is closed (a caller that stopped reading).
func (r *maskingReader) loop(done <-chan struct{}) {
	for {
		var n int
		var ok bool
		select {
		case n, ok = <-r.asked:
			if !ok {
				return
			}
		case <-done:
			return
		}
		k, err := r.src.Read(r.buf[:n])
		r.results <- readResult{r.buf[:k], err}
		if err != nil && !isTimeout(err) {
			return
		}
	}
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// errSessionDone ends reads of a masked stream whose session was torn down.
var errSessionDone = errors.New("the session ended")

func (r *maskingReader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		if r.end != nil {
			return 0, r.end
		}
		if !r.reading {
			select {
			case r.asked <- min(len(p), len(r.buf)):
			case <-r.done:
				r.end = errSessionDone
				continue
			}
			r.reading = true
		}
		var res readResult
		var idle <-chan time.Time
		var timer *time.Timer
		if r.stream.Held() > 0 {
			timer = time.NewTimer(r.idle)
			idle = timer.C
		}
		stopTimer := func() {
			if timer != nil {
				timer.Stop()
			}
		}
		select {
		case res = <-r.results:
			stopTimer()
		case <-idle:
			// A read that completed meanwhile wins over the timer: a
			// goroutine that was not scheduled for a while must not
			// decide a value whose rest has already arrived.
			select {
			case res = <-r.results:
			default:
			}
			if res.data != nil || res.err != nil {
				break
			}
			// No more output for a while: release what is held.
			out, hits := r.stream.Flush()
			if err := r.emit(out, hits); err != nil {
				return 0, err
			}
			continue
		case <-r.done:
			// Torn down: what is held is neither recorded nor shown.
			stopTimer()
			r.end = errSessionDone
			continue
		}
		r.reading = false
		var alone bool // a key typed on its own, after a pause
		if r.released != nil {
			r.raw = append(r.raw, res.data...)
			now := time.Now()
			alone = len(res.data) == 1 && now.Sub(r.lastInput) > r.keyGap
			if len(res.data) > 0 {
				r.lastInput = now
			}
		}
		out, hits := r.stream.Write(res.data)
		var o2 []byte
		var h2 []mask.Hit
		switch {
		case res.err != nil && !isTimeout(res.err):
			out, hits = slices.Clone(out), slices.Clone(hits) // the stream reuses them
			o2, h2 = r.stream.Close()
		case alone && r.stream.Held() > 0:
			// Held, it would wait for more keys that a person types
			// far apart, and its echo would wait again on the way
			// back: decided at once. Keys a program types close
			// together (maskKeyGap) are held as output is, from the
			// second on.
			out, hits = slices.Clone(out), slices.Clone(hits)
			o2, h2 = r.stream.Flush()
		}
		out, hits = append(out, o2...), append(hits, h2...)
		if err := r.emit(out, hits); err != nil {
			return 0, err
		}
		if res.err != nil {
			if isTimeout(res.err) && len(r.pending) == 0 {
				return 0, res.err
			}
			if !isTimeout(res.err) {
				close(r.asked)
				r.end = res.err
			}
		}
	}
	if r.released == nil {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	n := copy(p, r.pendingRaw)
	r.released(p[:n], r.pending[:n])
	r.pending, r.pendingRaw = r.pending[n:], r.pendingRaw[n:]
	return n, nil
}

// emit records the mask frames of hits, then queues out to be returned.
func (r *maskingReader) emit(out []byte, hits []mask.Hit) error {
	if len(hits) > 0 {
		stream := ""
		if r.released != nil {
			stream = "input"
		}
		if err := recordMasks(r.rec, r.channel, stream, "positions", positions(hits)); err != nil {
			return recordingFailed(err)
		}
	}
	if r.prompt != nil && len(out) > 0 {
		r.prompt.output(out)
	}
	r.pending = append(r.pending, out...)
	if r.released != nil {
		// Masking keeps length: out stands for the next len(out) bytes
		// sent.
		r.pendingRaw = append(r.pendingRaw, r.raw[:len(out)]...)
		r.raw = append(r.raw[:0], r.raw[len(out):]...)
	}
	return nil
}

// promptWatch notices password prompts in a terminal's output, so that
// what is typed at one is recorded as a redaction marker, not as the
// characters.
type promptWatch struct {
	mu     sync.Mutex
	tail   []byte // the end of the output so far
	active bool   // guarded by mu: the output ends in a password prompt
}

// passwordPrompt reports whether the output ends in a prompt for a secret.
func passwordPrompt(tail []byte) bool {
	s := strings.ToLower(strings.TrimRight(string(tail), " \t"))
	if !strings.HasSuffix(s, ":") {
		return false
	}
	if i := strings.LastIndexAny(s, "\r\n"); i >= 0 {
		s = s[i+1:]
	}
	for _, w := range []string{"password", "passphrase", "passcode", "pin", "secret", "token"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

func (w *promptWatch) output(b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tail = append(w.tail, b...)
	if len(w.tail) > 256 {
		w.tail = slices.Clone(w.tail[len(w.tail)-256:])
	}
	w.active = passwordPrompt(w.tail)
}

// redact reports whether input now goes to a password prompt; the end of
// a line (the secret's end) closes the prompt.
func (w *promptWatch) redact(in []byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.active {
		return false
	}
	if slices.ContainsFunc(in, func(c byte) bool { return c == '\r' || c == '\n' }) {
		w.active = false
		w.tail = w.tail[:0]
	}
	return true
}

// outputFilter is what the session's output from the target passes
// through before it is recorded: the masking profile policy chose, and
// the watch for password prompts. Without either, r itself.
func (s *frontSession) outputFilter(ctx context.Context, r io.Reader, channel uint32, rec Recorder) io.Reader {
	if s.masker != nil {
		return newMaskingReader(ctx.Done(), r, s.masker, rec, channel, s.prompt)
	}
	if s.prompt != nil {
		return &watchingReader{r, s.prompt}
	}
	return r
}

// inputFilter is what the client's input passes through before it is
// recorded and forwarded, and the recorder the session's pumps then
// append to. Under a masking profile, values the client sends whole (a
// line an agent writes, a paste) are masked in the input frames, each
// masking a mask frame (stream "input") recorded before them, while the
// target receives the bytes as sent; bytes that may begin a value wait,
// as output does, for the rest of it, or for maskInputIdle. Without a profile,
// src and rec themselves.
func (s *frontSession) inputFilter(ctx context.Context, src io.Reader, rec Recorder) (io.Reader, Recorder) {
	if s.masker == nil {
		return src, rec
	}
	im := &inputMasking{Recorder: rec, masker: s.masker}
	r := newMaskingReader(ctx.Done(), src, s.masker, rec, 0, nil)
	r.released, r.idle, r.keyGap = im.released, maskInputIdle, maskKeyGap
	return r, im
}

// inputMasking is the recorder side of input masking: each input frame
// the pumps append is recorded as the masked copy the reader made of the
// same bytes.
type inputMasking struct {
	Recorder
	masker *mask.Masker

	mu    sync.Mutex
	queue []sentChunk // guarded by mu: chunks read and not yet appended, in order
}

type sentChunk struct{ sent, masked []byte }

func (im *inputMasking) released(sent, masked []byte) {
	if len(sent) == 0 {
		return
	}
	// The queue holds the chunks read ahead of their append: no more than
	// the pumps' buffers in flight.
	im.mu.Lock()
	im.queue = append(im.queue, sentChunk{slices.Clone(sent), slices.Clone(masked)})
	im.mu.Unlock()
}

func (im *inputMasking) Append(kind uint8, channel uint32, p []byte) (uint64, error) {
	if kind != kindInput {
		return im.Recorder.Append(kind, channel, p)
	}
	im.mu.Lock()
	var c sentChunk
	if len(im.queue) > 0 {
		if !bytes.Equal(im.queue[0].sent, p) {
			im.mu.Unlock()
			// The pumps append what they read, in order: anything else
			// is a bug, and nothing unmasked may be recorded for it.
			return 0, errors.New("input masking: the input appended is not the input read")
		}
		c, im.queue = im.queue[0], im.queue[1:]
	}
	im.mu.Unlock()
	if c.sent == nil {
		// Input that did not come through the reader (the end-of-file
		// character bastion sends for a closed stdin): masked whole,
		// so that nothing passes unmasked.
		// Its mask frames have no positions: the offset in the input
		// is not known here.
		masked, hits := im.masker.Text(string(p))
		counts := map[string]int{}
		for _, h := range hits {
			counts[h.Detector]++
		}
		for _, d := range slices.Sorted(maps.Keys(counts)) {
			payload, err := recorder.EncodeAttrs(recorder.Attrs{"detector": d, "count": strconv.Itoa(counts[d]), "stream": "input"})
			if err == nil {
				_, err = im.Recorder.Append(uint8(recorder.KindMask), channel, payload)
			}
			if err != nil {
				return 0, err
			}
		}
		c.masked = []byte(masked)
	}
	return im.Recorder.Append(kind, channel, c.masked)
}

// redacting wraps rec so that input typed at a password prompt is
// recorded as a redaction marker, where policy asks for it.
func (s *frontSession) redacting(rec Recorder) Recorder {
	if s.prompt == nil {
		return rec
	}
	return redactingRecorder{rec, s.prompt}
}

// watchingReader passes output through unchanged, watching for password
// prompts.
type watchingReader struct {
	src    io.Reader
	prompt *promptWatch
}

func (w *watchingReader) Read(p []byte) (int, error) {
	n, err := w.src.Read(p)
	if n > 0 {
		w.prompt.output(p[:n])
	}
	return n, err
}

// redactingRecorder records input typed at a password prompt as a mask
// frame (detector "password-prompt", the length typed) instead of the
// characters; the characters still reach the target once it is committed.
type redactingRecorder struct {
	Recorder
	prompt *promptWatch
}

func (r redactingRecorder) Append(kind uint8, channel uint32, p []byte) (uint64, error) {
	if kind != kindInput || !r.prompt.redact(p) {
		return r.Recorder.Append(kind, channel, p)
	}
	payload, err := recorder.EncodeAttrs(recorder.Attrs{"detector": "password-prompt", "action": "input-redacted", "length": strconv.Itoa(len(p))})
	if err != nil {
		return 0, err
	}
	return r.Recorder.Append(uint8(recorder.KindMask), channel, payload)
}
