package main

// What the user reads when things go wrong, and the exit status.
//
// # Messages
//
// Every error is printed to stderr as one "bastion: error: MSG" line,
// followed by zero or more "bastion: hint: HINT" lines. Messages are
// lowercase with no trailing period, like the errors they come from.
// Attach hints with [withHint]. Control characters in a message are
// escaped; an error that lists problems on several lines has them
// indented under its first ([messageText]).
//
// # Exit status
//
//	0  success, and also for "bastion help", "bastion -h" and "bastion CMD -h"
//	1  the command failed: any error that is not one of those below
//	2  the command line was wrong: an unknown or unavailable command, a bad
//	   flag or argument ([usageError], made by [usageErrorf] and by
//	   [flagSet.Parse]); also "bastion" alone, which prints the overview
//	N  whatever an [exitError] says, made by [exitCode]
//
// 1 for failures and 2 for usage follows most Unix tools. A command whose
// contract fixes other codes returns an [exitError]: verify, for example,
// reports a tampered journal with exitCode(1, nil) after printing its
// findings, and an error that kept it from checking with exitCode(2, err).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/bastionhq/bastion/recorder/termtext"
)

const (
	exitFailure = 1
	exitUsage   = 2
)

// A usageError is a mistake on the command line. It exits 2, and the
// dispatcher adds a hint pointing to the command's usage.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usageErrorf returns a [usageError] with a formatted message, for example
// usageErrorf("play needs a session ID").
func usageErrorf(format string, a ...any) error {
	return &usageError{fmt.Errorf(format, a...)}
}

// A hintError carries hints: what the user can do next. The message is
// that of err; each hint prints on its own "bastion: hint:" line.
type hintError struct {
	err   error
	hints []string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

// withHint returns err with hints attached, for example
//
//	withHint(err, `run "bastion ca init" first`)
//
// It returns nil if err is nil. Hints added to an error that already has
// some come after them.
func withHint(err error, hints ...string) error {
	if err == nil {
		return nil
	}
	return &hintError{err: err, hints: hints}
}

// An exitError sets the exit status. With a nil err it prints nothing: the
// command has already said what it has to say. Return it as is, unwrapped,
// when err is nil, or the status line would be lost in the wrapping.
type exitError struct {
	code int
	err  error // nil for a silent exit
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitCode returns an error that makes bastion exit with code, printing err
// if it is not nil.
func exitCode(code int, err error) error {
	return &exitError{code: code, err: err}
}

// report prints err to w as described at the top of this file and returns
// the exit status.
func report(w io.Writer, err error) int {
	code := exitFailure
	var ue *usageError
	if errors.As(err, &ue) {
		code = exitUsage
	}
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if ee == nil || ee.err != nil {
		fmt.Fprintf(w, "bastion: error: %s\n", messageText(err.Error()))
	}
	for _, h := range hints(err) {
		fmt.Fprintf(w, "bastion: hint: %s\n", messageText(h))
	}
	return code
}

// messageText is an error or a hint as printed: what it quotes from outside
// escaped (see [termtext.Lines]), and the lines after its first, if it has
// any on purpose (a list of problems), indented, so that no line of it
// passes for a message of its own.
func messageText(s string) string {
	return strings.ReplaceAll(termtext.Lines(s), "\n", "\n    ")
}

// hints returns the hints of every [hintError] in err's chain, the
// innermost first: they are closest to the cause.
func hints(err error) []string {
	var out []string
	for err != nil {
		if he, ok := err.(*hintError); ok {
			out = slices.Concat(he.hints, out)
		}
		err = errors.Unwrap(err)
	}
	return out
}

// printText writes text to w with exactly one trailing newline.
func printText(w io.Writer, text string) {
	fmt.Fprintln(w, strings.TrimRight(text, "\n"))
}

const overviewHead = `bastion is an SSH bastion that records every privileged session, command
and byte of output into a journal that an auditor can verify offline.

Usage:
    bastion [--home DIR] <command> [flags] [arguments]

Commands:
`

const overviewTail = `
Every command takes --home DIR, the directory that holds the keys and the
default journal (journal.db). Without it, bastion uses $BASTION_HOME, and
without that, ~/.bastion.

Every read of the journal (play, export, evidence, sessions show, sessions
search, verify) is recorded in it first, by the running "bastion serve"
through its access socket (the journal's path and ".sock"), or by the
reader itself when no process holds the journal; a read that cannot be
recorded is refused unless --unrecorded is given. $BASTION_TOKEN_FILE (or
--token-file) names an OIDC token that names you in the reads and the
operator actions (sessions kill, certs revoke, grants revoke --operator, ca
rotate) serve records.

Run "bastion help <command>" for a command's flags and examples.
`

// overview returns the text "bastion help" prints: it lists the commands
// this build has, and no others.
func overview() string {
	var b strings.Builder
	b.WriteString(overviewHead)
	writeCommandList(&b, available())
	b.WriteString(overviewTail)
	return b.String()
}

// writeCommandList writes one indented "name  summary" line per command,
// summaries aligned.
func writeCommandList(b *strings.Builder, list []*command) {
	width := 0
	for _, c := range list {
		width = max(width, len(c.name))
	}
	for _, c := range list {
		fmt.Fprintf(b, "    %-*s  %s\n", width, c.name, c.summary)
	}
}

func init() {
	register(&command{
		name:    "help",
		summary: "show the commands, or one command's flags and examples",
		usage:   helpUsage,
		run:     runHelp,
	})
}

const helpUsage = `Usage:
    bastion help [COMMAND]

Without COMMAND, lists the commands this build has. With COMMAND, prints
its usage: what it does, its flags and examples. "bastion COMMAND -h" does
the same. A group name, such as "sessions", lists the group's subcommands.

Examples:
    $ bastion help
    $ bastion help version
    $ bastion help ca init`

func runHelp(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		printText(e.stdout, overview())
		return nil
	}
	// Accept both "help ca init" and "help 'ca init'".
	words := strings.Fields(strings.Join(fs.Args(), " "))
	c, rest, err := lookup(words)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return unknownCommand(strings.Join(words, " "))
	}
	printText(e.stdout, c.usage)
	return nil
}
