package sessions

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/playback"
	"github.com/bastionhq/bastion/storage"
)

// Where a search looks: [In] values.
const (
	InAll      = "all"
	InCommands = "commands"
	InOutput   = "output"
)

// A Matcher returns where in a line a search matches, as
// [regexp.Regexp.FindStringIndex] does, or nil.
type Matcher func(line string) []int

// NewMatcher matches pattern as plain text (case-sensitive), or as a Go
// regular expression when regex is set.
func NewMatcher(pattern string, regex bool) (Matcher, error) {
	if pattern == "" {
		return nil, fmt.Errorf("an empty pattern matches everything")
	}
	if regex {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return nil, err
		}
		return re.FindStringIndex, nil
	}
	return func(s string) []int {
		i := strings.Index(s, pattern)
		if i < 0 {
			return nil
		}
		return []int{i, i + len(pattern)}
	}, nil
}

// Bounds of what a regular expression may cost a search that a stranger
// to the machine asks for (the console's): [CheckRegexpCost].
const (
	// MaxRegexpInsts bounds the instructions of the compiled program: a
	// search's time per byte grows with them.
	MaxRegexpInsts = 1000
	// MaxRegexpRepeat bounds a repeat count ({n}, {n,m}).
	MaxRegexpRepeat = 100
)

// CheckRegexpCost refuses a Go regular expression whose search would cost
// much: one that repeats something more than [MaxRegexpRepeat] times, or
// whose compiled program has more than [MaxRegexpInsts] instructions. It
// reads the pattern as [regexp.Compile] does, and returns its error for a
// pattern that is not a regular expression.
func CheckRegexpCost(pattern string) error {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return err
	}
	if n := maxRepeat(re); n > MaxRegexpRepeat {
		return fmt.Errorf("it repeats something %d times, and a search here repeats at most %d: make it simpler", n, MaxRegexpRepeat)
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return err
	}
	if len(prog.Inst) > MaxRegexpInsts {
		return fmt.Errorf("it compiles to %d instructions, and a search here takes at most %d (each repeat of a part counts): make it simpler", len(prog.Inst), MaxRegexpInsts)
	}
	return nil
}

// maxRepeat is the largest repeat count in re.
func maxRepeat(re *syntax.Regexp) int {
	n := 0
	if re.Op == syntax.OpRepeat {
		n = max(re.Min, re.Max)
	}
	for _, sub := range re.Sub {
		n = max(n, maxRepeat(sub))
	}
	return n
}

// Hit is a match of a search: a line of a session's commands or output
// (its JSON is "bastion sessions search --json").
type Hit struct {
	Session string `json:"session"`
	// Member and Log are as in [Session].
	Member   uint16 `json:"member,omitempty"`
	Log      string `json:"log,omitempty"`
	OffsetNS int64  `json:"offset_ns"`
	Offset   string `json:"offset"`
	// In is "command" or "output".
	In            string `json:"in"`
	Reconstructed bool   `json:"reconstructed,omitempty"`
	// Text is the line, cut to [MaxContext] bytes around the match.
	Text string `json:"text"`
}

// Search reads session s of snap, verified with v as "bastion play"
// verifies it, and calls hit with each line of its output (escape
// sequences removed; in order) and then of its commands (exec commands,
// and command lines rebuilt from keystrokes) that find matches, as in
// says (InAll, InCommands, InOutput). The output it reads was masked when
// it was recorded. A session that does not verify is an error wrapping
// [recorder.ErrSessionBroken]; hits already passed on came from frames
// that verified.
func Search(ctx context.Context, snap storage.Snapshot, v note.Verifier, s Session, find Matcher, in string, hit func(Hit)) error {
	return search(ctx, snap, v, s, find, in, nil, hit)
}

// ErrScanBudget is what a search returns when it has matched as many
// bytes as its [Budget] allows.
var ErrScanBudget = errors.New("the search scanned as many bytes as it may")

// A Budget bounds the work of a search over many sessions: the bytes of
// the lines (output and commands) it matches, in all. Its zero value
// bounds nothing. A Budget is for one search at a time.
type Budget struct {
	MaxBytes int64 // 0: no bound
	// Scanned is how many bytes were matched so far.
	Scanned int64
}

// budgetCheck is how many lines a search under a [Budget] matches between
// two looks at its context.
const budgetCheck = 256

// Search is [Search] under b: once the lines matched would pass
// b.MaxBytes, it stops and returns [ErrScanBudget]; it also stops when
// ctx ends (checked every so many lines), with ctx's cause. Either way
// the hits passed on before it stopped came from frames that verified.
func (b *Budget) Search(ctx context.Context, snap storage.Snapshot, v note.Verifier, s Session, find Matcher, in string, hit func(Hit)) error {
	return search(ctx, snap, v, s, find, in, b, hit)
}

func search(ctx context.Context, snap storage.Snapshot, v note.Verifier, s Session, find Matcher, in string, b *Budget, hit func(Hit)) error {
	id, err := uuid.Parse(s.ID)
	if err != nil {
		return err
	}
	var stopped error // why a search under b stopped
	if b != nil {
		if err := context.Cause(ctx); err != nil {
			return err
		}
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		lines := 0
		match := find
		find = func(text string) []int {
			switch {
			case stopped != nil:
				return nil
			case b.MaxBytes > 0 && b.Scanned+int64(len(text)) > b.MaxBytes:
				stopped = ErrScanBudget
			case lines%budgetCheck == 0 && ctx.Err() != nil:
				stopped = context.Cause(ctx)
			}
			if stopped != nil {
				cancel(stopped) // the frames are read no further
				return nil
			}
			lines++
			b.Scanned += int64(len(text))
			return match(text)
		}
	}
	add := func(at time.Duration, where string, recon bool, text string) {
		loc := find(text)
		if loc == nil {
			return
		}
		hit(Hit{Session: s.ID, Member: s.Member, Log: s.Log, OffsetNS: int64(at), Offset: Offset(int64(at)), In: where, Reconstructed: recon, Text: Around(text, loc)})
	}
	rec, err := recorder.OpenSession(ctx, snap, recorder.SessionID(id), recorder.OpenOptions{Verifier: v})
	if err != nil {
		if b != nil && ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return err
	}
	var lines func(playback.Line)
	if in != InCommands {
		lines = func(l playback.Line) { add(l.Offset, "output", false, l.Text) }
	}
	sum, err := playback.Describe(ctx, snap, rec, lines)
	if b != nil && stopped == nil && ctx.Err() != nil {
		stopped = context.Cause(ctx)
	}
	if stopped != nil {
		return stopped
	}
	if err != nil {
		return err
	}
	if in != InOutput {
		for _, c := range sum.Commands {
			add(c.Offset, "command", c.Reconstructed, c.Text)
		}
	}
	return stopped
}

// MaxContext bounds the line a [Hit] holds around its match.
const MaxContext = 160

// Around cuts s to at most MaxContext bytes around the match loc.
func Around(s string, loc []int) string {
	if len(s) <= MaxContext {
		return s
	}
	from := max(0, loc[0]-(MaxContext-(loc[1]-loc[0]))/2)
	to := min(len(s), from+MaxContext)
	for from > 0 && !runeStart(s[from]) {
		from--
	}
	for to < len(s) && !runeStart(s[to]) {
		to++
	}
	out := s[from:to]
	if from > 0 {
		out = "…" + out
	}
	if to < len(s) {
		out += "…"
	}
	return out
}

func runeStart(b byte) bool { return b&0xc0 != 0x80 }
