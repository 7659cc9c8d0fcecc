package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

func init() {
	register(&command{
		name:    "ca init",
		summary: "create the journal signing key and the certificate authorities",
		usage:   caInitUsage,
		run:     runCAInit,
	})
	register(&command{
		name:    "ca show",
		summary: "print the public keys and the lines that make OpenSSH trust them",
		usage:   caShowUsage,
		run:     runCAShow,
	})
	register(&command{
		name:    "ca rotate",
		summary: "give a certificate authority a new key, the old one trusted for a grace period",
		usage:   caRotateUsage,
		run:     runCARotate,
	})
}

// Where targets and directly reached servers are told to keep the CA keys
// they trust. sshd reads only the first TrustedUserCAKeys line, but the
// file it names may hold several keys.
const (
	targetCAFile   = "/etc/ssh/bastion_target_ca.pub"
	revokedKRLFile = "/etc/ssh/bastion_revoked.krl"
	userCAFile     = "/etc/ssh/bastion_user_ca.pub"
)

const caInitUsage = `Usage:
    bastion ca init [--origin NAME] [--algorithm ed25519|ecdsa-p256 | --join HOME]

Creates the keys bastion needs in its home directory (--home DIR, else
$BASTION_HOME, else ~/.bastion), which it creates with mode 0700:

    journal.key       the journal signing key (Ed25519, signed-note format), 0600
    journal.pub       its public key, for auditors: "bastion verify --key"
    ca/user_ca        the user CA: signs users' certificates; the bastion
                      trusts it, and so can servers users reach directly
    ca/host_ca        the host CA: signs the bastion's host certificate;
                      clients trust it in known_hosts
    ca/target_ca      the target CA: signs the certificates the bastion logs
                      in to targets with; targets trust it
    ca/*.pub          the CAs' public keys

The CA private keys are in OpenSSH format, mode 0600, readable by ssh-keygen.
Then ca init prints the lines to paste into clients' known_hosts and into
targets' sshd_config; "bastion ca show" prints them again.

Keys are never overwritten: if one exists, ca init changes nothing and fails.
A journal can only be extended with the key that signed it, so keep
journal.key safe and give journal.pub to whoever verifies the journal.

With --join, the home is a second instance of the bastion in HOME (a
member of a cluster on one database, docs/scale-out.md): it gets a journal
key of its own, with its own origin, and a copy of HOME's certificate
authorities and API TLS identity, so that clients and targets trust both
instances alike. Copy the private keys only where they are kept as
carefully as in HOME.

Flags:
    --origin NAME        the journal's log origin, named in every checkpoint
                         (default: HOSTNAME/bastion/RANDOM)
    --algorithm ALG      the CAs' key type: ed25519 (default) or ecdsa-p256
    --join HOME          copy the certificate authorities of the bastion in
                         HOME rather than create new ones

Examples:
    $ bastion ca init
    $ bastion --home /var/lib/bastion ca init --origin bank.example/bastion/prod
    $ bastion ca init --algorithm ecdsa-p256
    $ bastion --home /var/lib/bastion-b ca init --origin bank.example/bastion/b --join /var/lib/bastion-a`

func runCAInit(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	origin := fs.String("origin", "", "log origin `NAME`")
	algName := fs.String("algorithm", string(certauth.AlgorithmEd25519), "CA key type `ALG`")
	join := fs.String("join", "", "copy the authorities of the bastion in `HOME`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	algGiven := false
	fs.Visit(func(f *flag.Flag) { algGiven = algGiven || f.Name == "algorithm" })
	if *join != "" && algGiven {
		return usageErrorf("ca init: --join copies the authorities, whose algorithm is theirs: drop --algorithm")
	}
	if fs.NArg() > 0 {
		return usageErrorf("ca init takes no arguments")
	}
	alg, err := certauth.ParseAlgorithm(*algName)
	if err != nil {
		return &usageError{err}
	}
	if *join != "" {
		// Checked before anything is made, so that a wrong HOME leaves
		// nothing behind.
		if _, err := certauth.LoadAuthorities(*join, time.Now()); err != nil {
			return fmt.Errorf("join %s: %w", *join, err)
		}
	}
	home, err := e.makeHome()
	if err != nil {
		return err
	}
	originGiven := *origin != ""
	if !originGiven {
		host, _ := os.Hostname()
		*origin = certauth.DefaultOrigin(host)
	}
	// A home that has a journal key but no certificate authorities (made
	// before bastion issued certificates) gets the authorities and keeps
	// its key; a home that has both is never touched.
	kept := false
	key, err := certauth.CreateJournalKey(home, *origin)
	if errors.Is(err, certauth.ErrKeyExists) {
		if _, serr := os.Stat(filepath.Join(home, certauth.CADir)); serr == nil {
			return withHint(err, "keys are never overwritten; use another --home for a new bastion")
		}
		if originGiven {
			return withHint(err, "this home has a journal key already; its origin cannot change: drop --origin to add the certificate authorities only")
		}
		key, err = certauth.LoadJournalKey(home)
		kept = true
	}
	if err != nil {
		return err
	}
	var as *certauth.Authorities
	if *join != "" {
		as, err = certauth.JoinAuthorities(home, *join)
	} else {
		as, err = certauth.CreateAuthorities(home, alg)
	}
	if err != nil {
		if !kept {
			// Leave the home as it was: take back the journal key just made.
			os.Remove(filepath.Join(home, certauth.JournalKeyFile))
			os.Remove(filepath.Join(home, certauth.JournalPubKeyFile))
		}
		if errors.Is(err, certauth.ErrKeyExists) {
			return withHint(err, "keys are never overwritten; use another --home for a new bastion")
		}
		return err
	}

	w := e.stdout
	switch {
	case *join != "":
		fmt.Fprintf(w, "created the keys of a new instance of the bastion in %s, in %s\n\n", *join, home)
	case kept:
		fmt.Fprintf(w, "added the certificate authorities to the bastion in %s (its journal key is kept)\n\n", home)
	default:
		fmt.Fprintf(w, "created the keys of a new bastion in %s\n\n", home)
	}
	fmt.Fprintf(w, "journal signing key\n")
	fmt.Fprintf(w, "  private: %s (keep it secret: only this key can extend the journal)\n", filepath.Join(home, certauth.JournalKeyFile))
	fmt.Fprintf(w, "  public:  %s\n", filepath.Join(home, certauth.JournalPubKeyFile))
	fmt.Fprintf(w, "  origin:  %s\n\n", key.Signer.Name())
	fmt.Fprintf(w, "certificate authorities (%s); keep the private keys secret:\n", alg)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range certauth.Roles {
		a := as.Get(r)
		fmt.Fprintf(tw, "  %s CA\t%s\t%s\n", r, a.KeyFile, ssh.FingerprintSHA256(a.Signer.PublicKey()))
	}
	tw.Flush()
	fmt.Fprintf(w, "\ngive auditors the public key, out of band:\n  %s\n", key.VerifierKey)
	writeTrust(w, as, trustOrder...)
	return nil
}

const caShowUsage = `Usage:
    bastion ca show [--json]

Prints the public keys of the bastion in the home directory: the journal's,
for auditors, and every key each certificate authority trusts (the active
key, then retired keys still in their grace period), with the lines to
paste into clients' known_hosts and into sshd_config on targets and on
servers users reach directly. It needs read access to the private keys,
which it checks.

Flags:
    --json   print one JSON object instead

Examples:
    $ bastion ca show
    $ bastion --home /var/lib/bastion ca show --json`

// caShowJSON is what "ca show --json" prints. The fields it shares with the
// API's GET /v1/ca answer have the same names and meaning.
type caShowJSON struct {
	Home    string `json:"home"`
	Journal struct {
		Origin    string `json:"origin"`
		PublicKey string `json:"public_key"`
	} `json:"journal"`
	Authorities       []caJSON `json:"authorities"`
	UserCA            []string `json:"user_ca"`
	HostCA            []string `json:"host_ca"`
	TargetCA          []string `json:"target_ca"`
	KnownHosts        []string `json:"known_hosts"`
	TrustedUserCAKeys []string `json:"trusted_user_ca_keys"`
	SSHDConfig        []string `json:"sshd_config"`
}

type caJSON struct {
	Role       string      `json:"role"`
	Algorithm  string      `json:"algorithm"`
	PrivateKey string      `json:"private_key"`
	Keys       []caKeyJSON `json:"keys"`
}

type caKeyJSON struct {
	PublicKey   string     `json:"public_key"`
	Fingerprint string     `json:"fingerprint"`
	Until       *time.Time `json:"until,omitempty"` // retired keys only
}

func runCAShow(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("ca show takes no arguments")
	}
	home, err := e.home()
	if err != nil {
		return err
	}
	as, err := loadAuthorities(home, time.Now())
	if err != nil {
		return err
	}
	pubFile := filepath.Join(home, certauth.JournalPubKeyFile)
	vkey, err := certauth.LoadVerifierKey(pubFile)
	if err != nil {
		return fmt.Errorf("journal public key: %w", err)
	}
	v, err := recorder.ParseVerifierKey(vkey)
	if err != nil {
		return fmt.Errorf("journal public key %s: %w", pubFile, err)
	}

	if *asJSON {
		var out caShowJSON
		out.Home = home
		out.Journal.Origin = v.Name()
		out.Journal.PublicKey = vkey
		for _, r := range certauth.Roles {
			a := as.Get(r)
			ca := caJSON{Role: string(r), Algorithm: string(a.Algorithm()), PrivateKey: a.KeyFile}
			for i, t := range a.Trusted {
				k := caKeyJSON{PublicKey: a.AuthorizedKeys()[i], Fingerprint: ssh.FingerprintSHA256(t.Key)}
				if !t.Until.IsZero() {
					until := t.Until.UTC()
					k.Until = &until
				}
				ca.Keys = append(ca.Keys, k)
			}
			out.Authorities = append(out.Authorities, ca)
		}
		out.UserCA = as.User.AuthorizedKeys()
		out.HostCA = as.Host.AuthorizedKeys()
		out.TargetCA = as.Target.AuthorizedKeys()
		out.KnownHosts = as.KnownHostsLines(hostsPlaceholder)
		out.TrustedUserCAKeys = as.Target.AuthorizedKeys()
		out.SSHDConfig = []string{"TrustedUserCAKeys " + targetCAFile}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}

	w := e.stdout
	fmt.Fprintf(w, "bastion home: %s\n\n", home)
	fmt.Fprintf(w, "journal signing key\n")
	fmt.Fprintf(w, "  public:  %s\n", pubFile)
	fmt.Fprintf(w, "  origin:  %s\n", v.Name())
	fmt.Fprintf(w, "  %s\n\n", vkey)
	fmt.Fprintf(w, "certificate authorities\n")
	for _, r := range certauth.Roles {
		writeAuthority(w, as.Get(r))
	}
	writeTrust(w, as, trustOrder...)
	return nil
}

const caRotateUsage = `Usage:
    bastion ca rotate --role user|host|target [--grace DURATION] [--algorithm ALG]
                      [--token-file FILE] [--db FILE]

Gives one certificate authority a new key. Certificates are signed with the
new key from now on. The old key is retired: its private key is deleted,
so it never signs again, but its public key stays trusted for the grace
period, so that certificates it signed keep working until they expire and
there is time to make every client or server trust the new key. Rotation
prints the lines to paste, with both keys; after the grace period the old
key is trusted no more, also by "bastion ca show".

Rotate when a CA key may have leaked (with a short grace period: the old
key is trusted until it ends) or on a schedule. A running "bastion serve"
keeps the key it loaded until it restarts.

Every rotation is journaled as a ca.rotated event: the role, both keys'
fingerprints, the algorithm, the grace period, and who rotated it. With a
server running for this home, through its admin socket, which checks the
rotation against the CA files and names the caller as it does for
"bastion certs revoke" (the kernel's uid, account and pid, and the person
of --token-file or operator_accounts); otherwise rotate writes the journal
itself, opening it before it rotates: a rotation that cannot be journaled
is not made.

Flags:
    --role ROLE          the CA to rotate: user, host or target
    --grace DURATION     how long the old key stays trusted: at least 1s, at
                         most 2160h (90 days) (default 24h)
    --algorithm ALG      the new key's type: ed25519 or ecdsa-p256
                         (default: the type of the current key)
    --token-file FILE    an OIDC token naming you, for the server to verify
                         (default: $BASTION_TOKEN_FILE)
    --db FILE            the journal, when no server runs (default:
                         journal.db in the home directory)

Examples:
    $ bastion ca rotate --role target
    $ bastion ca rotate --role host --grace 168h
    $ bastion ca rotate --role user --grace 10m --algorithm ecdsa-p256`

func runCARotate(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	roleName := fs.String("role", "", "the CA to rotate: user, host or target")
	grace := fs.Duration("grace", 24*time.Hour, "how long the old key stays trusted")
	algName := fs.String("algorithm", "", "the new key's type")
	fs.StringVar(&e.tokenFile, "token-file", "", "token `FILE`")
	db := fs.String("db", "", "journal `FILE`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("ca rotate takes no arguments")
	}
	if *roleName == "" {
		return usageErrorf("ca rotate needs --role user, host or target")
	}
	role, err := certauth.ParseRole(*roleName)
	if err != nil {
		return &usageError{err}
	}
	if *grace < time.Second || *grace > certauth.MaxGrace {
		return usageErrorf("--grace %v: want at least 1s and at most %v (90 days)", *grace, certauth.MaxGrace)
	}
	var alg certauth.Algorithm
	if *algName != "" {
		if alg, err = certauth.ParseAlgorithm(*algName); err != nil {
			return &usageError{err}
		}
	}
	home, err := e.home()
	if err != nil {
		return err
	}
	now := time.Now()
	// Load everything first: rotating one CA of a broken home helps nobody.
	before, err := loadAuthorities(home, now)
	if err != nil {
		return err
	}
	old := before.Get(role).Signer.PublicKey()
	token, err := e.readerToken()
	if err != nil {
		return err
	}
	// The rotation is journaled by the running server, or else here: the
	// journal is opened first, so that a rotation it cannot take is not
	// made.
	server := bastion.ServerRunning(home)
	var j *recorder.Journal
	closeJournal := func() error { return nil }
	if !server {
		noServerToken(e, token)
		path, err := e.dbPath(*db)
		if err != nil {
			return err
		}
		if j, _, closeJournal, err = openJournalAt(ctx, home, path); err != nil {
			return withHint(fmt.Errorf("the rotation cannot be journaled, so the %s CA was not rotated: %w", role, err),
				"a rotation is journaled by the running \"bastion serve\", or by rotate itself when none runs")
		}
	}
	if server {
		// The server says first whether this operator may rotate: a
		// refused one replaces no key.
		if _, err := bastion.AdminCARotated(ctx, home, bastion.AdminCARotatedRequest{Role: string(role), By: operator(e), Token: token, Check: true}); err != nil {
			return fmt.Errorf("the %s CA was not rotated: %w", role, err)
		}
	}
	a, err := certauth.RotateAuthority(home, role, alg, *grace, now)
	if err != nil {
		return errors.Join(err, closeJournal())
	}
	rec := bastion.AdminCARotatedRequest{
		Role: string(role), OldFingerprint: ssh.FingerprintSHA256(old), NewFingerprint: ssh.FingerprintSHA256(a.Signer.PublicKey()),
		Algorithm: string(a.Algorithm()), Grace: grace.String(), By: operator(e), Token: token,
	}
	var leaf int64
	if server {
		leaf, err = bastion.AdminCARotated(ctx, home, rec)
	} else {
		attrs := bastion.CARotatedAttrs(rec)
		maps.Copy(attrs, selfOperatorAttrs())
		maps.Copy(attrs, selfAttrs(bastion.ViaCLI))
		attrs["by"] = operator(e)
		leaf, err = j.AppendEvent(ctx, events.CARotated, attrs)
		err = errors.Join(err, closeJournal())
	}
	if err != nil {
		return fmt.Errorf("the %s CA was rotated, but the rotation was not journaled: %w", role, err)
	}
	as, err := certauth.LoadAuthorities(home, now)
	if err != nil {
		return err
	}

	w := e.stdout
	fmt.Fprintf(w, "rotated the %s CA in %s\n", role, filepath.Dir(a.KeyFile))
	fmt.Fprintf(w, "  new key: %s (%s), signs from now on\n", ssh.FingerprintSHA256(a.Signer.PublicKey()), a.Algorithm())
	for _, t := range a.Trusted[1:] {
		if bytes.Equal(t.Key.Marshal(), old.Marshal()) {
			fmt.Fprintf(w, "  old key: %s, private key deleted, trusted until %s\n", ssh.FingerprintSHA256(old), t.Until.UTC().Format(time.RFC3339))
		}
	}
	if len(a.Trusted) > 2 {
		fmt.Fprintf(w, "  (and %d keys retired earlier, still in their grace period)\n", len(a.Trusted)-2)
	}
	fmt.Fprintf(w, "  journaled: ca.rotated, leaf %d\n", leaf)
	writeTrust(w, as, role)
	fmt.Fprintf(w, "\nrestart any running \"bastion serve\" so that it signs with the new key\n")
	if bastion.ServerRunning(home) {
		fmt.Fprintf(e.stderr, "bastion: warning: a bastion server is running for %s and still signs with the old %s CA key, which it holds in memory: restart it now\n", home, role)
	}
	return nil
}

// loadAuthorities loads the home's CAs, with a hint when there are none.
func loadAuthorities(home string, now time.Time) (*certauth.Authorities, error) {
	as, err := certauth.LoadAuthorities(home, now)
	if errors.Is(err, certauth.ErrNoAuthorities) {
		return nil, withHint(err, `run "bastion ca init" to create them`)
	}
	return as, err
}

// writeAuthority prints one CA: its active key file and the fingerprint
// of each trusted key.
func writeAuthority(w io.Writer, a *certauth.Authority) {
	fmt.Fprintf(w, "  %s CA (%s): %s\n", a.Role, a.Algorithm(), a.KeyFile)
	for _, t := range a.Trusted {
		if t.Until.IsZero() {
			fmt.Fprintf(w, "    active   %s\n", ssh.FingerprintSHA256(t.Key))
		} else {
			fmt.Fprintf(w, "    retired  %s, trusted until %s\n", ssh.FingerprintSHA256(t.Key), t.Until.UTC().Format(time.RFC3339))
		}
	}
}

// hostsPlaceholder stands, in the known_hosts lines ca init, show and
// rotate print, for the bastion's own names, which only serve's
// configuration knows: a line pasted as it is matches no host, where "*"
// would let the host CA vouch for every host.
const hostsPlaceholder = "BASTION-HOSTS"

// writeTrust prints, for each role, what to paste where so that OpenSSH
// trusts the CA's keys: all of them, retired ones included.
func writeTrust(w io.Writer, as *certauth.Authorities, roles ...certauth.Role) {
	indent := func(lines []string) string { return "  " + strings.Join(lines, "\n  ") }
	for _, r := range roles {
		switch r {
		case certauth.RoleHost:
			fmt.Fprintf(w, "\nclients trust the bastion's host certificate (host CA), for the bastion's own\n")
			fmt.Fprintf(w, "names only, with, in ~/.ssh/known_hosts or /etc/ssh/ssh_known_hosts:\n%s\n", indent(as.KnownHostsLines(hostsPlaceholder)))
			fmt.Fprintf(w, "(%s: the names clients reach the bastion by, such as\n", hostsPlaceholder)
			fmt.Fprintf(w, "[bastion.example]:2222, as serve's known_hosts_pattern; \"bastion login\" writes\n")
			fmt.Fprintf(w, "the line with them itself. \"*\" would let the host CA vouch for every host.)\n")
		case certauth.RoleTarget:
			fmt.Fprintf(w, "\ntargets trust the certificates the bastion logs in with (target CA). Put in\n")
			fmt.Fprintf(w, "%s:\n%s\n", targetCAFile, indent(as.Target.AuthorizedKeys()))
			fmt.Fprintf(w, "and in /etc/ssh/sshd_config:\n  TrustedUserCAKeys %s\n", targetCAFile)
		case certauth.RoleUser:
			fmt.Fprintf(w, "\nservers users reach directly, without the bastion, trust users' certificates\n")
			fmt.Fprintf(w, "(user CA; the bastion itself already does). Put in %s:\n%s\n", userCAFile, indent(as.User.AuthorizedKeys()))
			fmt.Fprintf(w, "and in /etc/ssh/sshd_config:\n  TrustedUserCAKeys %s\n  RevokedKeys %s\n", userCAFile, revokedKRLFile)
			fmt.Fprintf(w, "(RevokedKeys: a copy of the KRL \"bastion serve\" keeps as revoked.krl in its home,\n")
			fmt.Fprintf(w, "rewritten on every revocation and served as GET /v1/krl by its API; fetch it\n")
			fmt.Fprintf(w, "often, as certificates live minutes. sshd refuses every key while it is missing.\n")
			fmt.Fprintf(w, "Never trust the user CA on a target behind the bastion: users' own certificates\n")
			fmt.Fprintf(w, "would then reach it around the bastion and its recording)\n")
		}
	}
}

// trustOrder is the order the trust instructions are printed in: what
// every client needs first.
var trustOrder = []certauth.Role{certauth.RoleHost, certauth.RoleTarget, certauth.RoleUser}
