package sessions

import (
	"context"
	"fmt"
	"regexp"
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
	id, err := uuid.Parse(s.ID)
	if err != nil {
		return err
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
		return err
	}
	var lines func(playback.Line)
	if in != InCommands {
		lines = func(l playback.Line) { add(l.Offset, "output", false, l.Text) }
	}
	sum, err := playback.Describe(ctx, snap, rec, lines)
	if err != nil {
		return err
	}
	if in != InOutput {
		for _, c := range sum.Commands {
			add(c.Offset, "command", c.Reconstructed, c.Text)
		}
	}
	return nil
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
