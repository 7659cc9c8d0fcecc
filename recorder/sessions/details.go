package sessions

import (
	"fmt"
	"time"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/playback"
)

// DetailCommand is a command of a session, as [Details] lists it.
type DetailCommand struct {
	Text     string `json:"text"`
	OffsetNS int64  `json:"offset_ns"`
	// Source is "exec" (an exec request's command, exactly as the client
	// sent it) or "reconstructed" (a line rebuilt from the keystrokes).
	Source    string `json:"source"`
	Uncertain bool   `json:"uncertain,omitempty"`
}

// Details is what the journal proves about one session, as "bastion
// sessions show" shows it (its JSON is that command's --json): who,
// where, the rule or grant, the commands, how it ended, bytes, masking
// counts, file transfers and bastion's notes.
type Details struct {
	ID string `json:"id"`
	// Member and Log are as in [Session].
	Member         uint16              `json:"member,omitempty"`
	Log            string              `json:"log,omitempty"`
	State          string              `json:"state"`
	Started        time.Time           `json:"started"`
	Ended          *time.Time          `json:"ended,omitempty"`
	Start          map[string]string   `json:"start"`
	End            map[string]string   `json:"end,omitempty"`
	Identity       string              `json:"identity,omitempty"`
	Target         string              `json:"target,omitempty"`
	Login          string              `json:"login,omitempty"`
	Route          string              `json:"route,omitempty"`
	Client         string              `json:"client,omitempty"`
	Rule           string              `json:"rule,omitempty"`
	Grant          string              `json:"grant,omitempty"`
	Commands       []DetailCommand     `json:"commands"`
	Exit           map[string]string   `json:"exit,omitempty"`
	Signals        []string            `json:"signals"`
	Masked         map[string]int64    `json:"masked"`
	Files          []map[string]string `json:"files"`
	Markers        []string            `json:"markers"`
	Frames         int64               `json:"frames"`
	InBytes        int64               `json:"in_bytes"`
	OutBytes       int64               `json:"out_bytes"`
	Duration       string              `json:"duration"`
	CheckpointSize int64               `json:"checkpoint_size"`
	Problems       []string            `json:"problems"`
}

// NewDetails puts together what the session's leaves say (row, from
// [Describe]), its record as opened and what its frames say (sum).
func NewDetails(row Session, rec *recorder.SessionRecord, sum *playback.Summary) *Details {
	start := rec.Start.Leaf.Attrs
	o := &Details{
		ID: row.ID, State: row.State, Started: time.Unix(0, rec.Start.Leaf.WallNS).UTC(), Ended: row.Ended,
		Start: start, Identity: row.Identity, Target: row.Target, Login: row.Login,
		Route: start["route"], Client: start["client"], Rule: firstOf(start, "rule", "policy.rule"), Grant: firstOf(start, "policy.grant", "grant", "grant.id"),
		Commands: []DetailCommand{}, Exit: sum.Exit, Signals: append([]string{}, sum.Signals...), Masked: sum.Masked,
		Files: []map[string]string{}, Markers: append([]string{}, sum.Markers...), Frames: sum.Frames, InBytes: sum.InBytes, OutBytes: sum.OutBytes,
		Duration: sum.Duration.Round(time.Millisecond).String(), CheckpointSize: rec.Checkpoint.Size, Problems: append([]string{}, rec.Problems...),
	}
	if rec.End != nil {
		o.End = rec.End.Leaf.Attrs
		if t := time.Unix(0, rec.End.Leaf.WallNS).UTC(); o.Ended == nil {
			o.Ended = &t
		}
	}
	for _, c := range sum.Commands {
		src := "exec"
		if c.Reconstructed {
			src = "reconstructed"
		}
		o.Commands = append(o.Commands, DetailCommand{Text: c.Text, OffsetNS: int64(c.Offset), Source: src, Uncertain: c.Uncertain})
	}
	for _, f := range sum.Files {
		o.Files = append(o.Files, f)
	}
	return o
}

func firstOf(a recorder.Attrs, keys ...string) string {
	for _, k := range keys {
		if v := a[k]; v != "" {
			return v
		}
	}
	return ""
}

// Offset formats an offset into a session as m:ss.mmm.
func Offset(ns int64) string {
	d := time.Duration(ns)
	return fmt.Sprintf("%d:%02d.%03d", int(d.Minutes()), int(d.Seconds())%60, d.Milliseconds()%1000)
}
