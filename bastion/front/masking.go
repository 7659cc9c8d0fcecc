package front

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bastionhq/bastion/bastion/pump"
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
// on its own, decided at once rather than held (see maskFilter). A
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
func (f *Front) textMasker() *mask.Masker { return f.maskers.text(f.currentPolicy()) }

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
func recordMasks(rec pump.Recorder, channel uint32, stream, field string, found map[string][]string) error {
	for _, d := range slices.Sorted(maps.Keys(found)) {
		a := recorder.Attrs{"detector": d, "count": strconv.Itoa(len(found[d])), field: strings.Join(found[d], ",")}
		if stream != "" {
			a["stream"] = stream
		}
		payload, err := recorder.EncodeAttrs(a)
		if err != nil {
			return err
		}
		if _, err := rec.Append(recorder.KindMask, channel, payload); err != nil {
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

// maskFilter masks one stream of a session as a pump stage, before it is
// recorded. On the target-to-client path (output), what it releases is
// what the journal holds and the client sees. On the client-to-target path
// (input), the journal holds the bytes masked while the target receives
// them as sent. Each masking is a frame of kind mask on the stream's
// channel, recorded before the bytes it describes (detector, count, and
// the stream offsets and lengths of the values, never the values).
//
// A value split across reads is still masked: the stream holds back a
// bounded tail that could begin one, and releases it once it is decided,
// or, when the pump finds the stream quiet for idle, as far as it is
// complete.
type maskFilter struct {
	stream  *mask.Stream
	channel uint32
	input   bool
	prompt  *promptWatch // output only; nil unless input at password prompts is redacted

	idle   time.Duration // how long held bytes wait for more: maskIdle, or maskInputIdle
	keyGap time.Duration // input: maskKeyGap

	// Input only: raw holds the bytes sent that the stream still holds
	// back, sent those released by the last call, and lastInput when
	// the last bytes were read.
	raw       []byte
	sent      []byte
	lastInput time.Time
}

var _ pump.Filter = (*maskFilter)(nil)

func newOutputMasking(m *mask.Masker, channel uint32, prompt *promptWatch) *maskFilter {
	return &maskFilter{stream: m.NewStream(), channel: channel, prompt: prompt, idle: maskIdle}
}

func newInputMasking(m *mask.Masker) *maskFilter {
	return &maskFilter{stream: m.NewStream(), input: true, idle: maskInputIdle, keyGap: maskKeyGap}
}

func (f *maskFilter) Filter(rec pump.Recorder, p []byte) (pump.Out, error) {
	var alone bool // a key typed on its own, after a pause
	if f.input {
		f.raw = append(f.raw, p...)
		now := time.Now()
		alone = len(p) == 1 && now.Sub(f.lastInput) > f.keyGap
		if len(p) > 0 {
			f.lastInput = now
		}
	}
	out, hits := f.stream.Write(p)
	if alone && f.stream.Held() > 0 {
		// Held, it would wait for more keys that a person types far
		// apart, and its echo would wait again on the way back: decided
		// at once. Keys a program types close together (maskKeyGap) are
		// held as output is, from the second on.
		out, hits = slices.Clone(out), slices.Clone(hits) // the stream reuses them
		o2, h2 := f.stream.Flush()
		out, hits = append(out, o2...), append(hits, h2...)
	}
	return f.emit(rec, out, hits)
}

// Flush releases what is held after no more bytes came for idle.
func (f *maskFilter) Flush(rec pump.Recorder) (pump.Out, error) {
	out, hits := f.stream.Flush()
	return f.emit(rec, out, hits)
}

// End releases everything held, masked as the stream ends.
func (f *maskFilter) End(rec pump.Recorder) (pump.Out, error) {
	out, hits := f.stream.Close()
	return f.emit(rec, out, hits)
}

func (f *maskFilter) Idle() time.Duration {
	if f.stream.Held() > 0 {
		return f.idle
	}
	return 0
}

// emit records the mask frames of hits, and returns out to be recorded
// and delivered; for input, to be recorded while the bytes sent are
// delivered.
func (f *maskFilter) emit(rec pump.Recorder, out []byte, hits []mask.Hit) (pump.Out, error) {
	if len(hits) > 0 {
		stream := ""
		if f.input {
			stream = "input"
		}
		if err := recordMasks(rec, f.channel, stream, "positions", positions(hits)); err != nil {
			return pump.Out{}, err
		}
	}
	if f.prompt != nil && len(out) > 0 {
		f.prompt.output(out)
	}
	if !f.input {
		return pump.Out{Record: out, Deliver: out}, nil
	}
	// Masking keeps length: out stands for the next len(out) bytes sent.
	f.sent = append(f.sent[:0], f.raw[:len(out)]...)
	f.raw = append(f.raw[:0], f.raw[len(out):]...)
	return pump.Out{Record: out, Deliver: f.sent}, nil
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

// filter is the pump stage of the session's stream of kind on channel:
// under a masking profile, the client's input is masked in the journal
// (the target receives it as sent) and the target's output is masked
// before it is recorded and shown; without one, the target's output is
// watched for password prompts where policy redacts what is typed at
// them. nil when the stream passes as it is.
func (s *frontSession) filter(kind recorder.Kind, channel uint32) pump.Filter {
	switch {
	case kind == recorder.KindInput && s.masker != nil:
		return newInputMasking(s.masker)
	case kind == recorder.KindInput:
		return nil
	case s.masker != nil:
		return newOutputMasking(s.masker, channel, s.prompt)
	case s.prompt != nil:
		return promptFilter{s.prompt}
	}
	return nil
}

// redacting wraps rec so that input typed at a password prompt is
// recorded as a redaction marker, where policy asks for it.
func (s *frontSession) redacting(rec pump.Recorder) pump.Recorder {
	if s.prompt == nil {
		return rec
	}
	return redactingRecorder{rec, s.prompt}
}

// promptFilter passes output through unchanged, watching for password
// prompts.
type promptFilter struct{ prompt *promptWatch }

func (w promptFilter) Filter(_ pump.Recorder, p []byte) (pump.Out, error) {
	w.prompt.output(p)
	return pump.Out{Record: p, Deliver: p}, nil
}

func (promptFilter) Flush(pump.Recorder) (pump.Out, error) { return pump.Out{}, nil }
func (promptFilter) End(pump.Recorder) (pump.Out, error)   { return pump.Out{}, nil }
func (promptFilter) Idle() time.Duration                   { return 0 }

// redactingRecorder records input typed at a password prompt as a mask
// frame (detector "password-prompt", the length typed) instead of the
// characters; the characters still reach the target once it is committed.
type redactingRecorder struct {
	pump.Recorder
	prompt *promptWatch
}

func (r redactingRecorder) Append(kind recorder.Kind, channel uint32, p []byte) (uint64, error) {
	if kind != recorder.KindInput || !r.prompt.redact(p) {
		return r.Recorder.Append(kind, channel, p)
	}
	payload, err := recorder.EncodeAttrs(recorder.Attrs{"detector": "password-prompt", "action": "input-redacted", "length": strconv.Itoa(len(p))})
	if err != nil {
		return 0, err
	}
	return r.Recorder.Append(recorder.KindMask, channel, payload)
}
