package evidence

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestClosest(t *testing.T) {
	known := []string{"prod-db", "prod-web", "staging-1", "agent-7@corp"}
	for _, c := range []struct{ name, want string }{
		{"prod-bd", "prod-db"},     // transposed
		{"prod-d", "prod-db"},      // a letter missing
		{"Prod-DB", "prod-db"},     // case
		{"staging-2", "staging-1"}, // one changed
		{"agent-8@corp", "agent-7@corp"},
		{"nothing-like-it", ""},
		{"x", ""},
	} {
		if got := Suggest(c.name, known); got != c.want {
			t.Errorf("Suggest(%q) = %q, want %q", c.name, got, c.want)
		}
	}
}

// TestTimelineScales lays out the timeline from an hour to a quarter:
// ticks on round times, at most 8 of them, labelled as finely as the
// step needs; thousands of sessions of one identity become a handful of
// marks whose titles count them.
func TestTimelineScales(t *testing.T) {
	from := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		span  time.Duration
		scale string
		label string // the first tick's label
	}{
		{time.Hour, "one tick = 15 minutes", "07-01 00:00"},
		{8 * time.Hour, "one tick = 1 hour", "07-01 00:00"},
		{7 * 24 * time.Hour, "one tick = 1 day", "2026-07-01"},
		{92 * 24 * time.Hour, "one tick = 2 weeks", "2026-07-06"}, // weeks fall on Mondays
		{2 * time.Minute, "one tick = 15 seconds", "00:00:00"},
	} {
		r := &Report{Scope: Scope{From: from, To: from.Add(c.span)}}
		var sessions []Session
		for i := range 5000 {
			at := from.Add(c.span * time.Duration(i) / 5000)
			end := at.Add(time.Second)
			sessions = append(sessions, Session{ID: fmt.Sprint(i), Identity: "agent@corp", Started: at, Ended: &end})
		}
		r.Sessions = sessions
		r.Identities = []Identity{{Identity: "agent@corp", Kind: "agent"}}
		tl := NewTimeline(r)
		if tl.Scale != c.scale || len(tl.Ticks) == 0 || len(tl.Ticks) > 9 || tl.Ticks[0].Label != c.label {
			t.Errorf("%v: scale %q, %d ticks, first %+v", c.span, tl.Scale, len(tl.Ticks), tl.Ticks)
		}
		marks, counted := 0, 0
		for _, s := range tl.Rows[0].Shapes {
			if s.Class != "session" {
				continue
			}
			marks++
			var n int
			if _, err := fmt.Sscanf(s.Title, "%d sessions", &n); err == nil {
				counted += n
			} else if strings.HasPrefix(s.Title, "session ") {
				counted++
			}
		}
		if marks > timelineChart/int(timelineBin)+1 || counted != 5000 {
			t.Errorf("%v: %d marks count %d sessions, want at most %d marks for 5000", c.span, marks, counted, timelineChart/int(timelineBin)+1)
		}
	}
}

func TestRuleRoles(t *testing.T) {
	for rule, want := range map[string]string{
		"role:ops":               "ops",
		"role:ops,role:db-grant": "ops db-grant",
		"role:ops deny:rm *":     "ops",
		"":                       "",
		"ops":                    "", // not a role's rule
		"role:":                  "",
	} {
		if got := strings.Join(ruleRoles(rule), " "); got != want {
			t.Errorf("ruleRoles(%q) = %q, want %q", rule, got, want)
		}
	}
}

// TestTimelineLongSpan: a period of centuries still gets a handful of
// ticks.
func TestTimelineLongSpan(t *testing.T) {
	from := time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC)
	r := &Report{Scope: Scope{From: from, To: time.Date(2250, 1, 1, 0, 0, 0, 0, time.UTC)}, Identities: []Identity{{Identity: "x@corp"}}}
	if tl := NewTimeline(r); len(tl.Ticks) == 0 || len(tl.Ticks) > 9 || tl.Scale != "one tick = 100 years" {
		t.Errorf("%d ticks, %s", len(tl.Ticks), tl.Scale)
	}
}
