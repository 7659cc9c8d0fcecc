package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bastionhq/bastion/bastion"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
)

func init() {
	register(&command{
		name:    "demo",
		summary: "record a scripted session, then verify the journal",
		usage:   demoUsage,
		run:     runDemo,
	})
}

const demoUsage = `Usage:
    bastion demo

Shows the journal at work, on this machine alone: creates the keys if the
home directory has none, records a scripted agent session (a shell running
a few commands in a pseudo-terminal, every byte committed before it is
shown), lists the sessions, verifies the whole journal with the public key
and prints the latest signed checkpoint. Runs without a terminal too.

The SSH front door (agents connecting with plain ssh) is not part of this
build yet; the demo will drive it when it is.

Examples:
    $ bastion demo
    $ bastion --home /tmp/try demo`

// demoScript is what the scripted agent types.
var demoScript = strings.Join([]string{
	`echo "agent: checking the payments service"`,
	`uname -s`,
	`printf 'disk: %s\n' "$(df -h / | tail -1 | tr -s ' ' | cut -d' ' -f4) free"`,
	`exit 0`,
}, "\n") + "\n"

// pacedLines types one line at a time, as an agent waiting for each
// command's output would; the journal records the pauses.
type pacedLines struct {
	lines []string
	pause time.Duration
}

func (p *pacedLines) Read(b []byte) (int, error) {
	for len(p.lines) > 0 && p.lines[0] == "" {
		p.lines = p.lines[1:]
	}
	if len(p.lines) == 0 {
		return 0, io.EOF
	}
	time.Sleep(p.pause)
	n := copy(b, p.lines[0])
	p.lines[0] = p.lines[0][n:]
	return n, nil
}

func runDemo(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("demo takes no arguments")
	}
	home, err := e.makeHome()
	if err != nil {
		return err
	}
	out := e.stdout
	step := func(format string, a ...any) { fmt.Fprintf(out, "\n==> "+format+"\n", a...) }

	step("keys in %s", home)
	if _, err := certauth.LoadJournalKey(home); errors.Is(err, certauth.ErrNoJournalKey) {
		host, _ := os.Hostname()
		key, err := certauth.CreateJournalKey(home, certauth.DefaultOrigin(host))
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "created the journal signing key; its public key is\n  %s\n", key.VerifierKey)
	} else if err != nil {
		return err
	} else {
		fmt.Fprintln(out, "using the existing journal signing key")
	}

	j, path, closeJournal, err := openJournal(ctx, e, "")
	if err != nil {
		return err
	}
	step("recording a scripted agent session into %s", path)
	s, err := j.StartSession(ctx, recorder.SessionInfo{
		Attrs:   recorder.Attrs{"kind": "record", "command": "sh", "identity": "demo-agent"},
		Summary: "sh (demo agent)",
	})
	if err != nil {
		closeJournal()
		return err
	}
	res, runErr := bastion.RunLocal(ctx, bastion.LocalConfig{
		Argv:   []string{"sh"},
		Env:    []string{"PS1=$ ", "PATH=" + os.Getenv("PATH"), "HOME=" + home, "TERM=dumb"},
		Stdin:  &pacedLines{lines: strings.SplitAfter(demoScript, "\n"), pause: 300 * time.Millisecond},
		Stdout: out,
	}, sessionRecorder{s})
	runErr = endLocal(ctx, s, res, runErr)
	if err := errors.Join(runErr, closeJournal()); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nsession %s ended with exit status %d\n", s.ID(), res.ExitCode)

	step("bastion sessions list")
	if err := runSessionsList(ctx, e, nil); err != nil {
		return err
	}

	pub := filepath.Join(home, certauth.JournalPubKeyFile)
	step("bastion verify --key %s", pub)
	if err := runVerify(ctx, e, []string{"--key", pub}); err != nil {
		return err
	}

	step("bastion checkpoint (keep it: a later verify --checkpoint proves the journal still extends it)")
	if err := runCheckpoint(ctx, e, nil); err != nil {
		return err
	}

	step("try it yourself")
	// Name the binary the way the user ran it ("bin/bastion" after make).
	self := "bastion"
	if len(os.Args) > 0 && strings.Contains(os.Args[0], "/") && !filepath.IsAbs(os.Args[0]) {
		self = os.Args[0]
	}
	for _, cmd := range []string{"record -- bash", "sessions list", "verify"} {
		fmt.Fprintf(out, "  %s --home %s %s\n", self, home, cmd)
	}
	return nil
}
