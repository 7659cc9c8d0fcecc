package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/termtext"
)

func init() {
	register(&command{
		name:    "certs list",
		summary: "list the certificates issued, and which are revoked",
		usage:   certsListUsage,
		run:     runCertsList,
	})
	register(&command{
		name:    "certs revoke",
		summary: "revoke certificates by serial or by identity",
		usage:   certsRevokeUsage,
		run:     runCertsRevoke,
	})
}

const certsListUsage = `Usage:
    bastion certs list [--all] [--json] [--db FILE] [--key FILE]

Lists the certificates the journal records as issued: by default those still
valid, with --all every one ever issued. Each shows its serial (the index of
its issuance leaf in the journal), identity, logins, validity and whether it
is revoked. It reads the journal without locking it, so it works beside a
running server.

The issuances and revocations come from the journal's signed records: every
leaf of the log is read and hashed, and must give the root of its latest
checkpoint, signed by the journal's key, or nothing is listed (exit 1). If
the index beside the records was changed, that is said first, on stderr,
and it exits 1.

Flags:
    --all        include expired certificates
    --json       print a JSON array of certificate records
    --db FILE    the journal (default: journal.db in the home directory)
    --key FILE   the journal's public key (default: journal.pub in the home
                 directory)

Examples:
    $ bastion certs list
    $ bastion certs list --all --json | jq '.[] | select(.identity == "agent-1@dev")'`

const certsRevokeUsage = `Usage:
    bastion certs revoke --serial N[,N...] [--reason TEXT] [--token-file FILE]
    bastion certs revoke --identity SUBJECT@PROVIDER [--block-for DURATION] [--reason TEXT]
                         [--token-file FILE]

Revokes certificates: the bastion refuses them from then on, the revocation
is a journal event naming who revoked and why, and the OpenSSH KRL file
(revoked.krl in the home directory) is rewritten for targets that use it as
RevokedKeys ("ssh-keygen -Q -f revoked.krl CERT" checks a certificate).

--identity revokes every valid certificate of that identity, and refuses new
certificates for tokens it was issued before the revocation: the identity
provider must issue it a new token. With --block-for, every token of the
identity is refused for that long, new ones too (a compromised workflow
gets nothing until the block ends or its provider stops vouching for it).

With a server running for this home, the revocation goes through it (its
admin socket); otherwise revoke writes the journal itself. The journal
names who revoked: the server records the uid, account and pid the kernel
reports for the caller, and the person: the identity of the OIDC token
given with --token-file (or $BASTION_TOKEN_FILE), which the server
verifies, else the identity the configuration's operator_accounts maps the
account to, else nobody ("operator.verified" none). When the policy names
operators, a person who is not one is refused ("not an operator"), and the
refusal is journaled.

Flags:
    --serial LIST      serials to revoke (comma-separated)
    --identity ID      an identity, as "certs list" shows it
    --block-for D      with --identity: refuse all its tokens for D (e.g. 24h)
    --reason TEXT      why (recorded in the journal)
    --db FILE          the journal, when no server runs (default: journal.db in the home)
    --krl FILE         the KRL, when no server runs (default: revoked.krl in the home)
    --json             print the result as JSON
    --token-file FILE  an OIDC token naming you, for the server to verify
                       (default: $BASTION_TOKEN_FILE)

Examples:
    $ bastion certs revoke --serial 1042 --reason "key left on a CI runner"
    $ bastion certs revoke --identity agent-7@github-actions --block-for 72h --reason "compromised workflow"`

func runCertsList(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	all := fs.Bool("all", false, "include expired certificates")
	asJSON := fs.Bool("json", false, "print JSON")
	db := fs.String("db", "", "journal `FILE`")
	keyFile := fs.String("key", "", "public key `FILE`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("certs list takes no arguments")
	}
	log, err := readLog(ctx, e, *keyFile, *db, certauth.RegistryEvents)
	if err != nil {
		return err
	}
	defer log.Close()
	now := time.Now()
	reg, err := certauth.LoadRegistry(log.Log, now, *all)
	if err != nil {
		return exitCode(1, withHint(fmt.Errorf("journal %w", err), `run "bastion verify" to check the journal`))
	}
	certs := reg.Certificates()
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(certs); err != nil {
			return err
		}
		return log.indexErr()
	}
	if len(certs) == 0 {
		if *all {
			fmt.Fprintln(e.stdout, "no certificates have been issued")
		} else {
			fmt.Fprintln(e.stdout, "no valid certificates (--all lists expired ones too)")
		}
		return log.indexErr()
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERIAL\tIDENTITY\tLOGINS\tVALID UNTIL\tSTATE\tKEY")
	for _, c := range certs {
		state := "valid"
		switch {
		case c.Revoked:
			state = "revoked " + c.RevokedAt.UTC().Format(time.RFC3339)
		case !c.ValidBefore.After(now):
			state = "expired"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", c.Serial, termtext.Line(c.Identity), termtext.Line(strings.Join(c.Principals, ",")),
			c.ValidBefore.UTC().Format(time.RFC3339), state, termtext.Line(c.KeyFingerprint))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return log.indexErr()
}

func runCertsRevoke(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	serialList := fs.String("serial", "", "serials `LIST`")
	identity := fs.String("identity", "", "identity `ID`")
	blockFor := fs.Duration("block-for", 0, "block `DURATION`")
	reason := fs.String("reason", "", "why (`TEXT`)")
	db := fs.String("db", "", "journal `FILE`")
	krl := fs.String("krl", "", "KRL `FILE`")
	asJSON := fs.Bool("json", false, "print JSON")
	fs.StringVar(&e.tokenFile, "token-file", "", "token `FILE`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("certs revoke takes no arguments")
	}
	if (*serialList == "") == (*identity == "") {
		return usageErrorf("certs revoke needs --serial LIST or --identity ID, not both")
	}
	if *blockFor < 0 || *blockFor > 0 && *identity == "" {
		return usageErrorf("--block-for needs --identity and a positive duration")
	}
	req := certauth.RevokeRequest{Identity: *identity, BlockFor: *blockFor, Reason: *reason, By: operator(e)}
	if *serialList != "" {
		for f := range strings.SplitSeq(*serialList, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if err != nil {
				return usageErrorf("--serial %q: want serial numbers separated by commas", *serialList)
			}
			req.Serials = append(req.Serials, n)
		}
	}
	home, err := e.home()
	if err != nil {
		return err
	}
	token, err := e.readerToken()
	if err != nil {
		return err
	}
	res, warning, err := bastion.AdminRevoke(ctx, home, req, token)
	via := "the running server"
	if errors.Is(err, bastion.ErrNoServer) {
		via = "the journal"
		noServerToken(e, token)
		req.Attrs = selfOperatorAttrs()
		res, err = revokeOffline(ctx, e, home, *db, *krl, req)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		if len(res.Serials) == 0 {
			fmt.Fprintf(e.stdout, "revoked identity %s (it held no valid certificate: check the spelling against \"certs list --all\"); journal leaf %d, through %s\n", termtext.Line(res.Identity), res.Leaf, via)
		} else {
			ss := make([]string, len(res.Serials))
			for i, s := range res.Serials {
				ss[i] = strconv.FormatUint(s, 10)
			}
			fmt.Fprintf(e.stdout, "revoked certificate(s) %s; journal leaf %d, through %s\n", strings.Join(ss, ", "), res.Leaf, via)
		}
	}
	if !res.BlockedUntil.IsZero() {
		fmt.Fprintf(e.stdout, "every token of %s is refused until %s\n", termtext.Line(res.Identity), res.BlockedUntil.UTC().Format(time.RFC3339))
	}
	if warning != "" {
		return errors.New(termtext.Line(warning))
	}
	return nil
}

// revokeOffline revokes in the journal directly, when no server runs.
func revokeOffline(ctx context.Context, e *env, home, dbFlag, krlFlag string, req certauth.RevokeRequest) (*certauth.RevokeResult, error) {
	auth, err := certauth.LoadAuthorities(home, time.Now())
	if err != nil {
		return nil, withHint(err, `run "bastion ca init" first`)
	}
	path, err := e.dbPath(dbFlag)
	if err != nil {
		return nil, err
	}
	j, _, closeJournal, err := openJournalAt(ctx, home, path)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	res, err := func() (*certauth.RevokeResult, error) {
		log, err := j.ReadLog(ctx, certauth.RegistryEvents)
		if err != nil {
			return nil, err
		}
		reg, err := certauth.LoadRegistry(log, now, false)
		if err != nil {
			return nil, fmt.Errorf("journal %w", err)
		}
		res, err := reg.Revoke(ctx, j, req, now)
		if err != nil {
			return nil, err
		}
		krlPath := krlFlag
		if krlPath == "" {
			krlPath = filepath.Join(home, bastion.DefaultKRLFile)
		}
		var keys []ssh.PublicKey
		for _, k := range auth.User.Trusted {
			keys = append(keys, k.Key)
		}
		if err := reg.WriteKRL(krlPath, keys, now); err != nil {
			return res, fmt.Errorf("revoked (journal leaf %d), but %w", res.Leaf, err)
		}
		return res, nil
	}()
	if cerr := closeJournal(); cerr != nil && err == nil {
		err = cerr
	}
	return res, err
}

// noServerToken warns that a token given for an operator action is not
// used: only a running server verifies tokens.
func noServerToken(e *env, token string) {
	if token != "" {
		fmt.Fprintln(e.stderr, "bastion: warning: no server runs to verify your token: the journal records your OS account only")
	}
}

// selfOperatorAttrs are the operator attributes of an operator action
// this process journals itself: its own uid, account and pid, and no
// person (operator.verified none).
func selfOperatorAttrs() recorder.Attrs {
	a := recorder.Attrs{"operator.verified": bastion.VerifiedNone, "operator.uid": strconv.Itoa(os.Getuid()), "operator.pid": strconv.Itoa(os.Getpid())}
	if u, err := user.Current(); err == nil {
		a["operator.user"] = u.Username
	}
	return a
}

// operator names who runs the command, for the journal.
func operator(e *env) string {
	if u, err := user.Current(); err == nil {
		return u.Username + " (uid " + u.Uid + ")"
	}
	return e.getenv("USER")
}
