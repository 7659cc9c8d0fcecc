package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
)

func init() {
	register(&command{
		name:    "sessions list",
		summary: "list recorded sessions",
		usage:   sessionsListUsage,
		run:     runSessionsList,
	})
}

const sessionsListUsage = `Usage:
    bastion sessions list [--db FILE] [--json]

Lists the journal's sessions, oldest first: ID, start time (UTC), state,
duration, frames, bytes in and out, and the command. A session is "ended"
once its end record is committed, and "open" before that: it is being
recorded, or its recorder stopped without ending it (see "bastion verify").

This is the journal's index, for finding sessions; "bastion verify" is what
proves the records behind it.

Flags:
    --db FILE   the journal (default: journal.db in the home directory)
    --json      one JSON array: id, started, ended (absent while open),
                state, frames, in_bytes, out_bytes, summary

Examples:
    $ bastion sessions list
    $ bastion sessions list --json | jq -r '.[] | select(.state == "open") | .id'`

type sessionJSON struct {
	ID       string     `json:"id"`
	Started  time.Time  `json:"started"`
	Ended    *time.Time `json:"ended,omitempty"`
	State    string     `json:"state"`
	Frames   int64      `json:"frames"`
	InBytes  int64      `json:"in_bytes"`
	OutBytes int64      `json:"out_bytes"`
	Summary  string     `json:"summary"`
}

func runSessionsList(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	db := fs.String("db", "", "journal `FILE`")
	asJSON := fs.Bool("json", false, "JSON output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("sessions list takes no arguments")
	}
	snap, st, _, err := openSnapshot(ctx, e, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	defer snap.Close()
	rows, err := snap.Sessions(ctx)
	if err != nil {
		return fmt.Errorf("read sessions: %w", err)
	}
	list := make([]sessionJSON, 0, len(rows))
	for _, r := range rows {
		s := sessionJSON{
			Started: time.Unix(0, r.StartedNS).UTC(), State: "open",
			Frames: r.Frames, InBytes: r.InBytes, OutBytes: r.OutBytes, Summary: r.Summary,
		}
		if id, err := uuid.FromBytes(r.ID); err == nil {
			s.ID = id.String()
		} else {
			s.ID = fmt.Sprintf("%x", r.ID)
		}
		if r.Ended() {
			t := time.Unix(0, r.EndedNS).UTC()
			s.Ended, s.State = &t, "ended"
		}
		list = append(list, s)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTARTED (UTC)\tSTATE\tDURATION\tFRAMES\tIN\tOUT\tCOMMAND")
	for _, s := range list {
		dur := "-"
		if s.Ended != nil {
			dur = s.Ended.Sub(s.Started).Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.ID, s.Started.Format("2006-01-02 15:04:05"), s.State, dur,
			s.Frames, byteCount(s.InBytes), byteCount(s.OutBytes), oneLine(s.Summary))
	}
	return tw.Flush()
}

// oneLine shows s on one line of a table: line breaks and tabs as escapes,
// other control characters as '?', so that a recorded command cannot
// break the listing or send the terminal escape sequences.
func oneLine(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < ' ' || r == 0x7f || r >= 0x80 && r < 0xa0:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
