package evidence

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"maps"
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
}).Parse(reportTemplate))

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

// Timeline is the picture of section 6: a row per identity, its
// certificates' validity and its grants' windows as bars, its sessions
// and refusals as marks, over the period.
type Timeline struct {
	Width, Height int
	Left, Chart   int // the label column's width, the chart's
	Ticks         []Tick
	Rows          []TimelineRow
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

// Shape is a bar or a mark: Class says which (cert, grant, grant-closed,
// session, session-open, refusal), Title what it is.
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
)

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
	for i := 0; i <= 4; i++ {
		at := from.Add(span * time.Duration(i) / 4)
		anchor := "middle"
		switch i {
		case 0:
			anchor = "start"
		case 4:
			anchor = "end"
		}
		t.Ticks = append(t.Ticks, Tick{X: x(at), Label: at.UTC().Format("01-02 15:04:05Z"), Anchor: anchor})
	}
	for i, id := range r.Identities {
		y := timelineTop + i*timelineRow
		row := TimelineRow{Y: y, Label: id.Identity, Kind: id.Kind}
		for _, c := range id.Certificates {
			end := c.ValidBefore
			if c.Revoked != nil && c.Revoked.At.Before(end) {
				end = c.Revoked.At
			}
			row.Shapes = append(row.Shapes, bar(c.ValidAfter, end, y+4, 6, "cert",
				fmt.Sprintf("certificate %d: %s, %s to %s", c.Serial, strings.Join(c.Principals, ","), fmtTime(c.ValidAfter), fmtTime(end))))
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
		for _, s := range r.Sessions {
			if s.Identity != id.Identity {
				continue
			}
			end, class := to, "session-open"
			if s.Ended != nil {
				end, class = *s.Ended, "session"
			}
			row.Shapes = append(row.Shapes, bar(s.Started, end, y+11, 12, class,
				fmt.Sprintf("session %s: %s@%s, %s to %s", s.ID, s.Login, s.Target, fmtTime(s.Started), fmtTimePtr(s.Ended))))
		}
		for _, f := range r.Refusals {
			if f.Identity == id.Identity {
				row.Shapes = append(row.Shapes, Shape{X: x(f.At) - 3, W: 6, Y: y + 24, H: 6, Class: "refusal",
					Title: fmt.Sprintf("%s at %s: %s", f.Event, fmtTime(f.At), f.Reason)})
			}
		}
		t.Rows = append(t.Rows, row)
	}
	t.Height = timelineTop + max(len(t.Rows), 1)*timelineRow + 10
	return t
}
