// Package sessions is what a verified journal says of its sessions, as
// the readers present it: one line of a list ([Session], [Describe],
// [Filter], [List]), a session in full ([Details]), a session named by
// its ID or a prefix of it ([Ref]), and a search of the commands and
// output ([Matcher], [Search]). "bastion sessions list/show/search" and
// the web console's sessions pages both present sessions through it, so
// that both say the same of them.
//
// It verifies nothing itself: its callers read the log with
// [recorder.ReadLog] and a session with [recorder.OpenSession], each with
// the journal's key, and pass on only what verified.
package sessions

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// Session states, as [Session].State says them.
const (
	// StateLive is a session without an end record whose recorder may
	// still be running.
	StateLive = "live"
	// StateUnterminated is the state of a session without an end record
	// whose recorder is gone: no live process holds the journal's writer
	// lock (it was killed, or the machine stopped), and no writer has
	// opened the journal since to end it as abandoned.
	StateUnterminated = "unterminated"
	// StateEnded is a session with an end record.
	StateEnded = "ended"
	// StateAbandoned is a session a later writer ended after its recorder
	// stopped.
	StateAbandoned = "abandoned"
)

// Session is one session as its signed start and end leaves and its last
// segment say: a line of "bastion sessions list" (its JSON is that
// command's documented --json).
type Session struct {
	ID string `json:"id"`
	// Member and Log name the cluster member whose log holds the
	// session: only when a cluster's logs are read.
	Member    uint16     `json:"member,omitempty"`
	Log       string     `json:"log,omitempty"`
	Started   time.Time  `json:"started"`
	Ended     *time.Time `json:"ended,omitempty"`
	State     string     `json:"state"`
	EndReason string     `json:"end_reason,omitempty"`
	Identity  string     `json:"identity,omitempty"`
	Target    string     `json:"target,omitempty"`
	Login     string     `json:"login,omitempty"`
	Client    string     `json:"client,omitempty"`
	Kind      string     `json:"kind,omitempty"`
	Frames    uint64     `json:"frames"`
	InBytes   *int64     `json:"in_bytes,omitempty"`
	OutBytes  *int64     `json:"out_bytes,omitempty"`
	Summary   string     `json:"summary"`
}

// Describe is what the signed start and end leaves (end nil while it is
// live) and its last segment (frames) say of session id.
func Describe(id recorder.SessionID, start, end *recorder.Leaf, frames uint64) Session {
	a := start.Attrs
	s := Session{
		ID: uuid.UUID(id).String(), Started: time.Unix(0, start.WallNS).UTC(), State: StateLive, Frames: frames,
		Identity: a["identity"], Target: a["target"], Login: a["login"], Client: a["client"], Kind: a["kind"],
	}
	if s.Kind == "record" {
		s.Identity, s.Target = a["user"], a["host"]
		if s.Identity == "" {
			s.Identity = a["identity"]
		}
	}
	switch {
	case a["command"] != "":
		s.Summary = a["command"]
	case a["subsystem"] != "":
		s.Summary = "subsystem " + a["subsystem"]
	case a["forward.destination"] != "":
		s.Summary = "forward to " + a["forward.destination"]
	case a["request"] == "shell":
		s.Summary = "(shell)"
	}
	if end != nil {
		t := time.Unix(0, end.WallNS).UTC()
		s.Ended, s.State, s.EndReason = &t, StateEnded, end.Attrs["reason"]
		if s.EndReason == events.EndAbandoned {
			s.State = StateAbandoned
		}
		s.InBytes, s.OutBytes = CountAttr(end.Attrs, recorder.AttrInBytes), CountAttr(end.Attrs, recorder.AttrOutBytes)
	}
	return s
}

// DescribeRecord is [Describe] of a session as opened: its start leaf,
// its end leaf (none while it is live) and the frames it committed.
func DescribeRecord(rec *recorder.SessionRecord) Session {
	var end *recorder.Leaf
	if rec.End != nil {
		end = rec.End.Leaf
	}
	return Describe(rec.ID, rec.Start.Leaf, end, rec.Frames())
}

// CountAttr reads a byte count of an end leaf; nil when it has none.
func CountAttr(a recorder.Attrs, key string) *int64 {
	n, err := strconv.ParseInt(a[key], 10, 64)
	if err != nil || n < 0 {
		return nil
	}
	return &n
}

// Filter selects sessions; its zero value selects every one.
type Filter struct {
	// Identity, Target and Login match the session's start record
	// exactly (a local "bastion record" matches Identity on its OS user
	// and Target on its host); State its state.
	Identity, Target, Login, State string
	// Since and Until keep the sessions active at some time in between;
	// zero means no bound.
	Since, Until time.Time
}

// Check says what is wrong with f's state, if anything.
func (f *Filter) Check() error {
	switch f.State {
	case "", StateLive, StateUnterminated, StateEnded, StateAbandoned:
		return nil
	}
	return fmt.Errorf("state %q: want live, unterminated, ended or abandoned", f.State)
}

// Match says whether f selects s.
func (f *Filter) Match(s *Session) bool {
	switch {
	case f.Identity != "" && s.Identity != f.Identity,
		f.Target != "" && s.Target != f.Target,
		f.Login != "" && s.Login != f.Login,
		f.State != "" && s.State != f.State,
		!f.Until.IsZero() && s.Started.After(f.Until),
		!f.Since.IsZero() && s.Ended != nil && s.Ended.Before(f.Since):
		return false
	}
	return true
}

// AccessAttrs are the filters as a journal.accessed leaf names them:
// identities, targets, period.from and period.to.
func (f *Filter) AccessAttrs() recorder.Attrs {
	a := recorder.Attrs{}
	if f.Identity != "" {
		a["identities"] = f.Identity
	}
	if f.Target != "" {
		a["targets"] = f.Target
	}
	if !f.Since.IsZero() {
		a["period.from"] = f.Since.UTC().Format(time.RFC3339)
	}
	if !f.Until.IsZero() {
		a["period.to"] = f.Until.UTC().Format(time.RFC3339)
	}
	return a
}

// ParseTime reads a time as the readers take it: RFC 3339, or a date and
// time without a zone (UTC), or a date.
func ParseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time or a date (2006-01-02)", s)
}

// List lists the sessions of a verified log that f matches, in the order
// the log starts them. gone says the journal's writer is gone, so that a
// session without an end is unterminated, not live.
func List(log *recorder.Log, f *Filter, gone bool) []Session {
	list := []Session{}
	for _, ls := range log.Sessions {
		s := Describe(ls.ID, ls.Start, ls.End, ls.Frames)
		if gone && s.State == StateLive {
			s.State = StateUnterminated
		}
		if f.Match(&s) {
			list = append(list, s)
		}
	}
	return list
}

// CommandWidth is how many characters of a session's command a list
// shows; the session's details give it whole.
const CommandWidth = 60

// ShortCommand is the command s on one line of at most width characters:
// its first line, cut short, with an ellipsis when anything was left out
// (a script's later lines, or the end of a long line).
func ShortCommand(s string, width int) string {
	line, _, more := strings.Cut(strings.TrimSpace(s), "\n")
	r := []rune(strings.TrimRight(line, " \t\r"))
	if len(r) > width {
		r, more = r[:width-1], true
	}
	if !more {
		return string(r)
	}
	return strings.TrimRight(string(r), " \t") + "…"
}
