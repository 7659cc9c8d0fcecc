package evidence

import (
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"maps"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/termtext"
)

//go:embed report.html.tmpl
var reportTemplate string

var tmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"time":     fmtTime,
	"timeptr":  fmtTimePtr,
	"join":     strings.Join,
	"section":  sectionTitle,
	"sections": func() any { return Sections },
	"serials": func(s []uint64) string {
		out := make([]string, len(s))
		for i, n := range s {
			out[i] = strconv.FormatUint(n, 10)
		}
		return strings.Join(out, ", ")
	},
	"ttl":            func(sec int64) string { return (time.Duration(sec) * time.Second).String() },
	"masked":         maskedText,
	"bytes":          recorder.ByteCount,
	"lastCheckpoint": func(c []CheckpointRef) CheckpointRef { return c[len(c)-1] },
	"short":          short,
	"certRows":       certRows,
	"reachOf": func(all []Reach, leaf int64) []Reach {
		var out []Reach
		for _, r := range all {
			if r.PolicyLeaf == leaf {
				out = append(out, r)
			}
		}
		return out
	},
	"sessionGroups":  sessionGroups,
	"standingGroups": standingGroups,
	"detailReason":   detailReason,
	"maxRefusalRows": func() int { return maxRefusalRows },
	"firstRefusals": func(rs []Refusal) []Refusal {
		return rs[:min(len(rs), maxRefusalRows)]
	},
}).Parse(reportTemplate))

// maxRefusalRows is how many refusals the HTML lists one by one; the
// JSON holds every one.
const maxRefusalRows = 200

// maxCertRows is how many certificates of one identity the HTML lists
// when the report samples sessions: beyond it, only the notable ones
// (revoked, under a grant, or used by a session reviewed in detail).
const maxCertRows = 12

// CertRows are the certificates of one identity the HTML lists, and a
// sentence for those it does not.
type CertRows struct {
	Shown  []Certificate
	Hidden string
}

func certRows(id Identity) CertRows {
	if len(id.Certificates) <= maxCertRows {
		return CertRows{Shown: id.Certificates}
	}
	var cr CertRows
	var n int
	var minTTL, maxTTL int64
	for _, c := range id.Certificates {
		if c.Revoked != nil || c.Grant != "" {
			cr.Shown = append(cr.Shown, c)
			continue
		}
		if n == 0 || c.TTLSeconds < minTTL {
			minTTL = c.TTLSeconds
		}
		maxTTL = max(maxTTL, c.TTLSeconds)
		n++
	}
	if n > 0 {
		cr.Hidden = fmt.Sprintf("and %d standing certificate(s), neither revoked nor under a grant, with lifetimes from %s to %s; evidence.json lists every one.",
			n, time.Duration(minTTL)*time.Second, time.Duration(maxTTL)*time.Second)
	}
	return cr
}

// SessionGroup counts the sessions of one identity, and says where they
// went.
type SessionGroup struct {
	Identity                 string
	Where                    []string // login@target (sessions), by name
	Count, Detailed, Broken  int
	First, Last              time.Time
	Commands, Frames, Masked int64
}

func sessionGroups(ss []Session) []SessionGroup {
	var t tally[string]
	var out []SessionGroup
	for _, s := range ss {
		i, isNew := t.slot(s.Identity, s.Login+"@"+s.Target)
		if isNew {
			out = append(out, SessionGroup{Identity: s.Identity, First: s.Started, Last: s.Started})
		}
		g := &out[i]
		g.Count++
		if s.Detailed {
			g.Detailed++
		}
		if !s.Verified {
			g.Broken++
		}
		if s.Started.Before(g.First) {
			g.First = s.Started
		}
		if s.Started.After(g.Last) {
			g.Last = s.Started
		}
		g.Commands += int64(len(s.Commands))
		g.Frames += s.Frames
		g.Masked += s.MaskedTotal
	}
	for i := range out {
		out[i].Where = countedNames(t.where[i])
	}
	slices.SortFunc(out, func(a, b SessionGroup) int { return strings.Compare(a.Identity, b.Identity) })
	return out
}

// tally numbers groups by key in the order they first appear, and counts
// where (login@target) each group's sessions went.
type tally[K comparable] struct {
	idx   map[K]int
	where []map[string]int
}

// slot is the group of key k, new when k was not seen before, with one
// more session to where.
func (t *tally[K]) slot(k K, where string) (i int, isNew bool) {
	if t.idx == nil {
		t.idx = map[K]int{}
	}
	i, ok := t.idx[k]
	if !ok {
		i = len(t.where)
		t.idx[k] = i
		t.where = append(t.where, map[string]int{})
	}
	t.where[i][where]++
	return i, !ok
}

// countedNames lists names with their counts, "deploy@web-1 (3)", by name.
func countedNames(m map[string]int) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, fmt.Sprintf("%s (%d)", k, m[k]))
	}
	return out
}

// StandingGroup counts the standing-access sessions of one identity
// under one rule, and says where they went.
type StandingGroup struct {
	Identity, Rule string
	Where          []string
	Count          int
	Leaf           int64 // the first one's start leaf
}

func standingGroups(refs []SessionRef) []StandingGroup {
	var t tally[[2]string]
	var out []StandingGroup
	for _, r := range refs {
		i, isNew := t.slot([2]string{r.Identity, r.Rule}, r.Login+"@"+r.Target)
		if isNew {
			out = append(out, StandingGroup{Identity: r.Identity, Rule: r.Rule, Leaf: r.Leaf})
		}
		out[i].Count++
	}
	for i := range out {
		out[i].Where = countedNames(t.where[i])
	}
	slices.SortFunc(out, func(a, b StandingGroup) int {
		return cmp.Or(strings.Compare(a.Identity, b.Identity), strings.Compare(a.Rule, b.Rule))
	})
	return out
}

// detailReason says why a session is reviewed in detail.
func detailReason(r *Report, id string) string {
	if r.Sample == nil {
		return "every session of the period is detailed (no --sample)"
	}
	var why []string
	if slices.Contains(r.Sample.Sessions, id) {
		why = append(why, fmt.Sprintf("sampled (seed %d)", r.Sample.Seed))
	}
	if slices.Contains(r.Sample.Exceptions, id) {
		why = append(why, "named by an exception")
	}
	return strings.Join(why, "; ")
}

// WriteHTML renders r as one self-contained HTML page: inline CSS and an
// inline SVG timeline, no script and nothing fetched, laid out for the
// screen and for print (each section on a new page). Everything the
// journal says is escaped: identities, commands and comments come from
// the people and agents the report is about. Control characters,
// bidirectional overrides and bytes that are not UTF-8 in it are shown as
// visible escapes ([termtext.Lines]): an override in a command would
// otherwise reorder how it reads in the browser, and an escape sequence
// would act on the terminal of whoever prints the file.
func WriteHTML(w io.Writer, r *Report) error {
	var page strings.Builder
	if err := tmpl.Execute(&page, struct {
		*Report
		Timeline *Timeline
	}{r, NewTimeline(r)}); err != nil {
		return err
	}
	_, err := io.WriteString(w, termtext.Lines(page.String()))
	return err
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return fmtTime(*t)
}

func sectionTitle(id string) string {
	for _, s := range Sections {
		if s.ID == id {
			return s.Title
		}
	}
	return id
}

func maskedText(s Session) string {
	if s.MaskedTotal == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s.Masked)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, s.Masked[k]))
	}
	return fmt.Sprintf("%d (%s)", s.MaskedTotal, strings.Join(parts, ", "))
}

// Timeline is the picture of section 7: a row per identity, when its
// certificates were valid and its grants' windows as bars, its sessions
// and refusals as marks, over the period, at any scale from an hour to a
// quarter: ticks fall on round times, and marks closer than the picture
// can show apart are drawn as one, taller the more it holds.
type Timeline struct {
	Width, Height int
	Left, Chart   int // the label column's width, the chart's
	// Scale says what one tick is ("one tick = 1 hour").
	Scale string
	Ticks []Tick
	Rows  []TimelineRow
}

// Tick is a time label on the axis.
type Tick struct {
	X      float64
	Label  string
	Anchor string // the SVG text-anchor: start, middle or end
}

// TimelineRow is one identity's row.
type TimelineRow struct {
	Y      int
	Label  string
	Kind   string
	Shapes []Shape
}

// Shape is a bar or a mark: Class says which (cert, grant, session,
// session-open, refusal), Title what it is.
type Shape struct {
	X, W  float64
	Y, H  int
	Class string
	Title string
}

const (
	timelineLeft  = 260
	timelineChart = 860
	timelineRow   = 34
	timelineTop   = 30
	// timelineBin is the width, in pixels, within which marks are
	// drawn as one.
	timelineBin = 4.0
)

// tickSteps are the round intervals ticks may fall on.
var tickSteps = []struct {
	d    time.Duration
	name string
}{
	{time.Second, "1 second"}, {5 * time.Second, "5 seconds"}, {15 * time.Second, "15 seconds"}, {time.Minute, "1 minute"},
	{5 * time.Minute, "5 minutes"}, {15 * time.Minute, "15 minutes"}, {time.Hour, "1 hour"}, {3 * time.Hour, "3 hours"},
	{6 * time.Hour, "6 hours"}, {24 * time.Hour, "1 day"}, {7 * 24 * time.Hour, "1 week"}, {14 * 24 * time.Hour, "2 weeks"},
	{28 * 24 * time.Hour, "4 weeks"}, {91 * 24 * time.Hour, "13 weeks"}, {182 * 24 * time.Hour, "26 weeks"},
	{365 * 24 * time.Hour, "1 year"}, {5 * 365 * 24 * time.Hour, "5 years"}, {25 * 365 * 24 * time.Hour, "25 years"},
	{100 * 365 * 24 * time.Hour, "100 years"},
}

// NewTimeline lays out the timeline of r.
func NewTimeline(r *Report) *Timeline {
	t := &Timeline{Left: timelineLeft, Chart: timelineChart, Width: timelineLeft + timelineChart + 20}
	from, to := r.Scope.From, r.Scope.To
	span := to.Sub(from)
	if span <= 0 {
		span = time.Second
	}
	x := func(at time.Time) float64 {
		f := float64(at.Sub(from)) / float64(span)
		f = min(max(f, 0), 1)
		return float64(timelineLeft) + f*timelineChart
	}
	bar := func(a, b time.Time, y, h int, class, title string) Shape {
		x0, x1 := x(a), x(b)
		return Shape{X: x0, W: max(x1-x0, 2), Y: y, H: h, Class: class, Title: title}
	}
	// At most 8 ticks, on round times (UTC), labelled as finely as the
	// step needs.
	step := tickSteps[len(tickSteps)-1]
	for _, s := range tickSteps {
		if span/s.d <= 8 {
			step = s
			break
		}
	}
	t.Scale = "one tick = " + step.name
	layout := "2006-01-02"
	switch {
	case step.d < time.Minute:
		layout = "15:04:05"
	case step.d < 24*time.Hour:
		layout = "01-02 15:04"
	}
	for at := from.UTC().Truncate(step.d); !at.After(to); at = at.Add(step.d) {
		if at.Before(from) {
			continue
		}
		t.Ticks = append(t.Ticks, Tick{X: x(at), Label: at.Format(layout), Anchor: "middle"})
	}
	if len(t.Ticks) > 0 {
		if t.Ticks[0].X < timelineLeft+30 {
			t.Ticks[0].Anchor = "start"
		}
		if last := &t.Ticks[len(t.Ticks)-1]; last.X > timelineLeft+timelineChart-30 {
			last.Anchor = "end"
		}
	}
	for i, id := range r.Identities {
		y := timelineTop + i*timelineRow
		row := TimelineRow{Y: y, Label: id.Identity, Kind: id.Kind}
		// Certificates: the union of their validity, one bar per run.
		type span struct {
			a, b time.Time
			n    int
		}
		var certs []span
		for _, c := range id.Certificates {
			end := c.ValidBefore
			if c.Revoked != nil && c.Revoked.At.Before(end) {
				end = c.Revoked.At
			}
			certs = append(certs, span{c.ValidAfter, end, 1})
		}
		slices.SortFunc(certs, func(p, q span) int { return p.a.Compare(q.a) })
		var runs []span
		for _, c := range certs {
			if n := len(runs); n > 0 && x(c.a) <= x(runs[n-1].b)+timelineBin {
				if c.b.After(runs[n-1].b) {
					runs[n-1].b = c.b
				}
				runs[n-1].n++
				continue
			}
			runs = append(runs, c)
		}
		for _, c := range runs {
			row.Shapes = append(row.Shapes, bar(c.a, c.b, y+4, 6, "cert",
				fmt.Sprintf("%d certificate(s) valid from %s to %s", c.n, fmtTime(c.a), fmtTime(c.b))))
		}
		for _, g := range r.Grants {
			if g.Requester != id.Identity || g.Start == nil {
				continue
			}
			end := *g.End
			if g.Closed != nil && g.Closed.At.Before(end) {
				end = g.Closed.At
			}
			row.Shapes = append(row.Shapes, bar(*g.Start, end, y+12, 10, "grant",
				fmt.Sprintf("grant %s: %s as %s, %s to %s (%s)", g.ID, g.Target, g.Login, fmtTime(*g.Start), fmtTime(end), g.State)))
		}
		// Sessions: grouped by bin of their start; a group's mark spans
		// its first start to its last end, and is as tall as the log of
		// its count allows.
		type group struct {
			a, b  time.Time
			n     int
			open  bool
			first string
		}
		var groups []group
		var sess []Session
		for _, s := range r.Sessions {
			if s.Identity == id.Identity {
				sess = append(sess, s)
			}
		}
		slices.SortFunc(sess, func(p, q Session) int { return p.Started.Compare(q.Started) })
		for _, s := range sess {
			end, open := to, true
			if s.Ended != nil {
				end, open = *s.Ended, false
			}
			if n := len(groups); n > 0 && x(s.Started) <= x(groups[n-1].b)+timelineBin {
				g := &groups[n-1]
				if end.After(g.b) {
					g.b = end
				}
				g.n++
				g.open = g.open || open
				continue
			}
			groups = append(groups, group{s.Started, end, 1, open, s.ID})
		}
		for _, g := range groups {
			class := "session"
			if g.open {
				class = "session-open"
			}
			title := fmt.Sprintf("session %s, %s to %s", g.first, fmtTime(g.a), fmtTime(g.b))
			h := 12
			if g.n > 1 {
				title = fmt.Sprintf("%d sessions, %s to %s", g.n, fmtTime(g.a), fmtTime(g.b))
				h = min(22, 12+3*bits.Len(uint(g.n)))
			}
			s := bar(g.a, g.b, y+11, h, class, title)
			s.Y = y + 23 - h
			row.Shapes = append(row.Shapes, s)
		}
		var lastX float64 = -1
		for _, f := range r.Refusals {
			if f.Identity != id.Identity {
				continue
			}
			if fx := x(f.At); lastX >= 0 && fx <= lastX+timelineBin {
				continue // drawn with the one before
			}
			lastX = x(f.At)
			row.Shapes = append(row.Shapes, Shape{X: lastX - 3, W: 6, Y: y + 24, H: 6, Class: "refusal",
				Title: fmt.Sprintf("%s at %s: %s", f.Event, fmtTime(f.At), f.Reason)})
		}
		t.Rows = append(t.Rows, row)
	}
	t.Height = timelineTop + max(len(t.Rows), 1)*timelineRow + 10
	return t
}
