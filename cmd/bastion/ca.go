package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bastionhq/bastion/certauth"
)

func init() {
	register(&command{
		name:    "ca init",
		summary: "create the journal signing key in the home directory",
		usage:   caInitUsage,
		run:     runCAInit,
	})
}

const caInitUsage = `Usage:
    bastion ca init [--origin NAME]

Creates the keys bastion needs in its home directory (--home DIR, else
$BASTION_HOME, else ~/.bastion), which it creates with mode 0700:

    journal.key   the journal signing key (Ed25519, signed-note format), 0600
    journal.pub   its public key, for auditors: "bastion verify --key"

Keys are never overwritten: if one exists, ca init changes nothing and fails.
A journal can only be extended with the key that signed it, so keep
journal.key safe and give journal.pub to whoever verifies the journal.

Flags:
    --origin NAME   the journal's log origin, named in every checkpoint
                    (default: HOSTNAME/bastion/RANDOM)

Examples:
    $ bastion ca init
    $ bastion --home /var/lib/bastion ca init --origin bank.example/bastion/prod`

func runCAInit(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	origin := fs.String("origin", "", "log origin `NAME`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("ca init takes no arguments")
	}
	home, err := e.makeHome()
	if err != nil {
		return err
	}
	if *origin == "" {
		host, _ := os.Hostname()
		*origin = certauth.DefaultOrigin(host)
	}
	key, err := certauth.CreateJournalKey(home, *origin)
	if errors.Is(err, certauth.ErrKeyExists) {
		return withHint(err, "keys are never overwritten; use another --home for a new bastion")
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "created the journal signing key in %s\n", home)
	fmt.Fprintf(e.stdout, "  private: %s (keep it secret: only this key can extend the journal)\n", filepath.Join(home, certauth.JournalKeyFile))
	fmt.Fprintf(e.stdout, "  public:  %s\n", filepath.Join(home, certauth.JournalPubKeyFile))
	fmt.Fprintf(e.stdout, "  origin:  %s\n\n", key.Signer.Name())
	fmt.Fprintf(e.stdout, "give auditors the public key, out of band:\n  %s\n", key.VerifierKey)
	return nil
}
