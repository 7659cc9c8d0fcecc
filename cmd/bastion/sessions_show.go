package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/playback"
	"github.com/bastionhq/bastion/recorder/sessions"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage"
)

func init() {
	register(&command{
		name:    "sessions show",
		summary: "show a session: who, where, commands, exit status, bytes, masking",
		usage:   sessionsShowUsage,
		run:     runSessionsShow,
	})
	register(&command{
		name:    "sessions search",
		summary: "search sessions' commands and output for text or a regular expression",
		usage:   sessionsSearchUsage,
		run:     runSessionsSearch,
	})
}

var sessionsShowUsage = `Usage:
    bastion sessions show [--db FILE] [--key FILE | --cluster FILE] [--force]
                          [--json] [--unrecorded] [--token-file FILE]
                          [--server URL [--ca-fingerprint SHA256:X]] ID

Shows what the journal proves about session ID (or a unique prefix of it,
4 characters at least): who (identity, certificate serial, client), where
(target, login, route), the authorizing rule or grant when the start
record names one, the commands, how it ended (exit status, signal), bytes
in and out, masking counts by detector, file transfers, and bastion's own
notes. Every start attribute is listed.

Commands: an exec request's command exactly as the client sent it; in an
interactive session, the command lines rebuilt from the keystrokes,
labelled "reconstructed" (and "uncertain" where keys the rebuild does not
follow, such as arrows, history or tab completion, were used: the output
shows what really ran).

The session is verified as "bastion play" verifies it: its leaves proven in
the head checkpoint, which must cover the whole journal, its frames chained
to the heads they commit, and no leaf of it hidden from the index. One that
does not verify is refused (exit 1); with --force it is shown as stored,
its problems first, and show still exits 1. A session ID the journal does
not hold exits 1 too.

` + clusterParagraph + `

` + readsParagraph("sessions show") + `

Flags:
    --db FILE    the journal (default: journal.db in the home directory)
    --key FILE   the journal's public key (default: journal.pub in the home
                 directory)
    --force      show a session that does not verify, its problems first
    --json       one JSON object: id, state, started, ended, start (all the
                 start attributes), end (the end attributes), identity,
                 target, login, route, client, rule, grant, commands (text,
                 offset_ns, source "exec" or "reconstructed", uncertain),
                 exit, signals, masked, files, markers, frames, in_bytes,
                 out_bytes, checkpoint_size, problems
` + readFlagsUsage(17) + "\n" + clusterFlagUsage(17) + `

Examples:
    $ bastion sessions show 0190b3c4-1f2e-7a6b-8c9d-0e1f2a3b4c5d
    $ bastion sessions show --json 0190b3c4-1f2e-7a6b-8c9d-0e1f2a3b4c5d | jq -r '.commands[].text'`

var sessionsSearchUsage = `Usage:
    bastion sessions search [--db FILE] [--key FILE | --cluster FILE] [--regex]
                            [--in commands|output|all] [list filters] [--json]
                            [--unrecorded] [--token-file FILE]
                            [--server URL [--ca-fingerprint SHA256:X]] PATTERN

Searches the sessions' commands (exec commands, and command lines rebuilt
from keystrokes) and output (lines, escape sequences removed) for PATTERN,
as plain text (case-sensitive), or as a Go regular expression with --regex
(prefix (?i) to ignore case). Prints one line per match: the session ID,
the offset into the session, where it matched, and the line.

It reads every session the filters of "bastion sessions list" keep
(--identity, --target, --login, --since, --until, --state), each verified
as "bastion play" verifies it; a session that does not verify is reported
on stderr and skipped, and search exits 1.

` + clusterParagraph + `

` + readsParagraph("search") + `
The journal.accessed event names the filters (identities, targets,
period.from, period.to), never the pattern, which may be a secret.

Flags:
    --db FILE      the journal (default: journal.db in the home directory)
    --key FILE     the journal's public key (default: journal.pub in the
                   home directory)
    --regex        PATTERN is a regular expression
    --in WHERE     commands, output, or all (default all)
    --json         one JSON array: session, offset_ns, offset, in
                   ("command" or "output"), reconstructed, text
` + readFlagsUsage(19) + "\n" + clusterFlagUsage(19) + `

Examples:
    $ bastion sessions search 'DROP TABLE'
    $ bastion sessions search --regex '(?i)rm\s+-rf' --since 2026-11-01
    $ bastion sessions search --in output --json 'permission denied'`

func runSessionsShow(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	db := fs.String("db", "", "journal `FILE`")
	keyFile := fs.String("key", "", "public key `FILE`")
	force := fs.Bool("force", false, "show a session that does not verify")
	asJSON := fs.Bool("json", false, "JSON output")
	unrecorded := e.registerReadFlags(fs)
	clusterFlag := registerClusterFlag(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("sessions show needs one session ID")
	}
	arg, err := parseSessionArg(pos[0])
	if err != nil {
		return err
	}
	sc, err := e.scope(*db, *keyFile, *clusterFlag)
	if err != nil {
		return err
	}
	ref, st, id, err := openSession(ctx, e, sc, arg)
	if err != nil {
		return err
	}
	defer st.Close()
	v, path := ref.v, sc.path
	snap, err := st.Snapshot(ctx)
	if err != nil {
		return exitCode(2, journalError(err))
	}
	defer snap.Close()
	rec, err := recorder.OpenSession(ctx, snap, recorder.SessionID(id), recorder.OpenOptions{Verifier: v, Force: *force})
	if errors.Is(err, storage.ErrNotFound) {
		return exitCode(1, withHint(fmt.Errorf("no session %s in %s", id, path), `run "bastion sessions list" to see the sessions`))
	}
	if rerr := recordRead(ctx, e, path, "show", sc.readAttrs(ref, id), *unrecorded); rerr != nil {
		return rerr
	}
	var sum *playback.Summary
	if err == nil {
		sum, err = playback.Describe(ctx, snap, rec, nil)
	}
	if errors.Is(err, recorder.ErrSessionBroken) {
		return withHint(err, "--force shows it all the same, with its problems")
	}
	if err != nil {
		return err
	}
	desc := sessions.DescribeRecord(rec)
	if desc.State == "live" && writerGone(ctx, st, path) {
		desc.State = StateUnterminated
	}
	out := sessions.NewDetails(desc, rec, sum)
	if sc.clustered() {
		out.Member, out.Log = ref.member, ref.name()
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printShow(e.stdout, out)
	}
	if len(rec.Problems) > 0 {
		return exitCode(1, withHint(fmt.Errorf("session %s does not verify: %d problem(s), shown above", id, len(rec.Problems)),
			`run "bastion verify --db `+path+`" for every finding`))
	}
	return nil
}

// showOut is what "sessions show" shows (and its --json).
type showOut = sessions.Details

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func printShow(w io.Writer, o *showOut) {
	if len(o.Problems) > 0 {
		// Said first: nothing below is proven.
		fmt.Fprintf(w, "SESSION %s DOES NOT VERIFY; shown as stored (--force), nothing below is proven:\n", termtext.Line(o.ID))
		for _, p := range o.Problems {
			fmt.Fprintf(w, "  - %s\n", termtext.Line(p))
		}
	}
	fmt.Fprintf(w, "session %s\n", termtext.Line(o.ID))
	if o.Log != "" {
		fmt.Fprintf(w, "  member:     %d, log %s (verified with that member's key only)\n", o.Member, termtext.Line(o.Log))
	}
	fmt.Fprintf(w, "  state:      %s\n", termtext.Line(o.State))
	fmt.Fprintf(w, "  started:    %s\n", o.Started.Format(time.RFC3339Nano))
	if o.Ended != nil {
		fmt.Fprintf(w, "  ended:      %s (%s", o.Ended.Format(time.RFC3339Nano), termtext.Line(o.End["reason"]))
		if d := o.End["detail"]; d != "" {
			fmt.Fprintf(w, ": %s", termtext.Line(d))
		}
		fmt.Fprintln(w, ")")
	}
	for _, kv := range [][2]string{{"identity", o.Identity}, {"target", o.Target}, {"login", o.Login}, {"route", o.Route}, {"client", o.Client}, {"rule", o.Rule}, {"grant", o.Grant}} {
		if kv[1] != "" {
			fmt.Fprintf(w, "  %-11s %s\n", kv[0]+":", termtext.Line(kv[1]))
		}
	}
	if o.Exit != nil {
		fmt.Fprintf(w, "  exit:       status %s", termtext.Line(o.Exit["status"]))
		if s := o.Exit["signal"]; s != "" {
			fmt.Fprintf(w, ", signal %s", termtext.Line(s))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  bytes:      %s in, %s out, in %d frames over %s\n", recorder.ByteCount(o.InBytes), recorder.ByteCount(o.OutBytes), o.Frames, o.Duration)
	if len(o.Masked) > 0 {
		var parts []string
		for _, d := range slices.Sorted(maps.Keys(o.Masked)) {
			parts = append(parts, fmt.Sprintf("%s %d", termtext.Line(d), o.Masked[d]))
		}
		fmt.Fprintf(w, "  masked:     %s\n", strings.Join(parts, ", "))
	}
	if len(o.Signals) > 0 {
		fmt.Fprintf(w, "  signals:    %s\n", termtext.Line(strings.Join(o.Signals, ", ")))
	}
	fmt.Fprintf(w, "  verified:   leaves proven in the checkpoint of size %d", o.CheckpointSize)
	if len(o.Problems) == 0 {
		fmt.Fprintln(w, ", every frame's chain intact")
	} else {
		fmt.Fprintf(w, "; DOES NOT VERIFY:\n")
		for _, p := range o.Problems {
			fmt.Fprintf(w, "    - %s\n", termtext.Line(p))
		}
	}
	fmt.Fprintln(w, "commands:")
	if len(o.Commands) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, c := range o.Commands {
		label := c.Source
		if c.Uncertain {
			label += ", uncertain"
		}
		fmt.Fprintf(w, "  %10s  %-26s  %s\n", sessions.Offset(c.OffsetNS), "("+termtext.Line(label)+")", termtext.Line(c.Text))
	}
	if len(o.Files) > 0 {
		fmt.Fprintln(w, "file transfers:")
		for _, f := range o.Files {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(f)) {
				parts = append(parts, termtext.Line(k)+"="+termtext.Line(f[k]))
			}
			fmt.Fprintf(w, "  %s\n", strings.Join(parts, " "))
		}
	}
	if len(o.Markers) > 0 {
		fmt.Fprintln(w, "notes by bastion:")
		for _, m := range o.Markers {
			fmt.Fprintf(w, "  %s\n", termtext.Line(m))
		}
	}
	fmt.Fprintln(w, "start attributes:")
	for _, k := range slices.Sorted(maps.Keys(o.Start)) {
		fmt.Fprintf(w, "  %s=%s\n", termtext.Line(k), termtext.Line(o.Start[k]))
	}
}

// hitJSON is a match of "sessions search" (and its --json).
type hitJSON = sessions.Hit

func runSessionsSearch(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	db := fs.String("db", "", "journal `FILE`")
	keyFile := fs.String("key", "", "public key `FILE`")
	isRegex := fs.Bool("regex", false, "PATTERN is a regular expression")
	in := fs.String("in", "all", "commands, output or all")
	asJSON := fs.Bool("json", false, "JSON output")
	unrecorded := e.registerReadFlags(fs)
	clusterFlag := registerClusterFlag(fs)
	var f sessionFilter
	f.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] == "" {
		return usageErrorf("sessions search needs one PATTERN")
	}
	if *in != "all" && *in != "commands" && *in != "output" {
		return usageErrorf("--in must be commands, output or all")
	}
	if err := f.check(); err != nil {
		return err
	}
	find, err := sessions.NewMatcher(pos[0], *isRegex)
	if err != nil {
		return usageErrorf("--regex: %v", err)
	}
	sc, err := e.scope(*db, *keyFile, *clusterFlag)
	if err != nil {
		return err
	}
	logs, failed, err := readScopeLogs(ctx, e, sc, nil)
	if err != nil {
		return err
	}
	defer closeScopeLogs(logs)
	attrs := f.AccessAttrs()
	if sc.clustered() {
		attrs["logs"] = sc.logNames()
	}
	if err := recordRead(ctx, e, sc.path, "search", attrs, *unrecorded); err != nil {
		return err
	}
	hits := []hitJSON{}
	broken := 0
	for _, s := range listScope(ctx, sc, logs, &f) {
		var snap storage.Snapshot
		var v note.Verifier
		for _, l := range logs {
			if !sc.clustered() || l.ref.member == s.Member {
				snap, v = l.snap, l.ref.v
				break
			}
		}
		err := sessions.Search(ctx, snap, v, s, find, *in, func(h hitJSON) {
			if !*asJSON {
				label := h.In
				if h.Reconstructed {
					label += " (reconstructed)"
				}
				member := ""
				if sc.clustered() {
					member = fmt.Sprintf("member %d  ", h.Member)
				}
				fmt.Fprintf(e.stdout, "%s%s  %s  %s  %s\n", member, termtext.Line(h.Session), h.Offset, label, termtext.Line(h.Text))
			}
			hits = append(hits, h)
		})
		if errors.Is(err, recorder.ErrSessionBroken) {
			broken++
			fmt.Fprintf(e.stderr, "bastion: warning: skipped session %s: %s\n", termtext.Line(s.ID), termtext.Line(err.Error()))
			continue
		}
		if err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(hits); err != nil {
			return err
		}
	}
	if broken > 0 {
		return withHint(fmt.Errorf("%d session(s) do not verify and were not searched", broken), `run "bastion verify" for the findings`)
	}
	return scopeErr(logs, failed)
}
