package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/apiclient"
	"github.com/bastionhq/bastion/recorder/termtext"
)

func init() {
	register(&command{
		name:    "status",
		summary: "show who you are to the bastion: certificate, logins, expiry, server",
		usage:   statusUsage,
		run:     runStatus,
	})
}

const statusUsage = `Usage:
    bastion status [--json] [--key PATH] [--profile FILE]
                   [--server URL] [--ca-fingerprint SHA256:...]

Shows what "bastion login" left you with, and whether the bastion
answers:

    identity      who the certificate says you are (its key ID: the
                  identity, whom you act for, the ticket, the grant)
    logins        the logins the certificate is good for (its principals)
    expires       when it expires, and how long that is from now, or
                  EXPIRED
    certificate   the certificate file (KEY-cert.pub) and its serial
    server        the bastion's API, the pin of its TLS certificate, and
                  where your token comes from, from the client profile
    answers       whether the bastion answers over the pinned TLS (GET
                  /v1/ca), its SSH front door, and whether it signed the
                  certificate

The certificate is read from the file alone, so that part works offline.
Nothing is sent but that one request, and no token is read.

The key is --key PATH, else the client profile's, else
~/.ssh/bastion_ed25519; the server and its pin are --server and
--ca-fingerprint, else the profile's (see "bastion help login").

Exit status 0 when you are ready: a certificate that has not expired,
signed by the bastion's user CA, and a bastion that answers. Otherwise 1,
after printing all of the above, with the reasons on stderr.

Flags:
    --json                    print a JSON object (below) instead
    --key PATH                the private key whose certificate to show
    --server URL              the bastion's API (default: the profile's)
    --ca-fingerprint SHA256:X pin the API's TLS certificate (default: the
                              profile's, for its server)
    --profile FILE            the client profile (default: $BASTION_PROFILE,
                              else ~/.config/bastion/profile.json)

The JSON object has: ok (the exit status is 0), problems (why not, one
line each), profile {file, found, error}, certificate {file, found,
error, serial, key_id, identity, sponsor, ticket, grant, principals,
valid_after, valid_before (RFC 3339), expired, seconds_left,
signed_by_server (absent when the server did not answer)} and server
{url, ca_fingerprint, token_source ("file", "env", "device", or "" when
no profile applies), token_file, token_env, issuer, answers, error,
ssh_address}. Fields are only ever added.

Examples:
    $ bastion status
    $ bastion status --json | jq -r .certificate.seconds_left
    $ bastion status --key ~/.ssh/agent_ed25519`

// statusJSON is the --json output of "bastion status". Fields are only
// ever added.
type statusJSON struct {
	OK          bool              `json:"ok"`
	Problems    []string          `json:"problems"`
	Profile     statusProfile     `json:"profile"`
	Certificate statusCertificate `json:"certificate"`
	Server      statusServer      `json:"server"`
}

type statusProfile struct {
	File  string `json:"file"`
	Found bool   `json:"found"`
	Error string `json:"error,omitempty"`
}

type statusCertificate struct {
	File           string    `json:"file"`
	Found          bool      `json:"found"`
	Error          string    `json:"error,omitempty"`
	Serial         uint64    `json:"serial,omitempty"`
	KeyID          string    `json:"key_id,omitempty"`
	Identity       string    `json:"identity,omitempty"`
	Sponsor        string    `json:"sponsor,omitempty"`
	Ticket         string    `json:"ticket,omitempty"`
	Grant          string    `json:"grant,omitempty"`
	Principals     []string  `json:"principals"`
	ValidAfter     time.Time `json:"valid_after,omitzero"`
	ValidBefore    time.Time `json:"valid_before,omitzero"`
	Expired        bool      `json:"expired"`
	SecondsLeft    int64     `json:"seconds_left"`
	SignedByServer *bool     `json:"signed_by_server,omitempty"`
}

type statusServer struct {
	URL           string `json:"url"`
	CAFingerprint string `json:"ca_fingerprint"`
	TokenSource   string `json:"token_source"`
	TokenFile     string `json:"token_file,omitempty"`
	TokenEnv      string `json:"token_env,omitempty"`
	Issuer        string `json:"issuer,omitempty"`
	Answers       bool   `json:"answers"`
	Error         string `json:"error,omitempty"`
	SSHAddress    string `json:"ssh_address,omitempty"`
}

// statusTimeout bounds the one request status sends.
const statusTimeout = 10 * time.Second

func runStatus(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	var a apiFlags
	var key string
	var asJSON bool
	fs.StringVar(&a.server, "server", "", "API `URL`")
	fs.StringVar(&a.fingerprint, "ca-fingerprint", "", "TLS certificate `SHA256:...`")
	fs.StringVar(&a.profileFlag, "profile", "", "client profile `FILE`")
	fs.StringVar(&key, "key", "", "private key `PATH`")
	fs.BoolVar(&asJSON, "json", false, "JSON output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("status takes no arguments")
	}

	st := statusJSON{Problems: []string{}, Certificate: statusCertificate{Principals: []string{}}}
	var hintList []string
	problem := func(msg string, hint ...string) {
		st.Problems = append(st.Problems, msg)
		for _, h := range hint {
			if h != "" && !slices.Contains(hintList, h) {
				hintList = append(hintList, h)
			}
		}
	}
	loginHint := `run "bastion login" for a new certificate`
	const firstLoginHint = "log in once with the server's address: bastion login --server URL [--ca-fingerprint SHA256:...] [--token-file FILE | --token-env VAR]"

	// The profile.
	path, err := e.profilePath(a.profileFlag)
	var prof *clientProfile
	if err == nil {
		st.Profile.File = path
		prof, err = loadProfile(path)
	}
	switch {
	case err != nil:
		st.Profile.Error = err.Error()
		problem("the client profile cannot be used: "+err.Error(), hints(err)...)
	case prof == nil && a.server == "":
		problem("there is no client profile at "+path, firstLoginHint)
	case prof != nil:
		st.Profile.Found = true
		a.apply(prof)
	}
	if a.server != "" {
		a.server = serverURL(a.server)
	}

	// The certificate, from its file alone.
	if key == "" && a.profile != nil {
		key = a.profile.Key
	}
	if key == "" {
		home := e.getenv("HOME")
		if home == "" {
			return withHint(errors.New("cannot find ~/.ssh: $HOME is not set"), "pass --key PATH")
		}
		key = filepath.Join(home, ".ssh", loginDefaultKey)
	}
	if key, err = filepath.Abs(key); err != nil {
		return err
	}
	cert := statusReadCertificate(&st.Certificate, key+"-cert.pub", time.Now())
	if a.server == "" {
		loginHint = "" // the first-login hint says more
	}
	if cert == nil {
		problem(st.Certificate.Error, loginHint)
	} else if st.Certificate.Expired {
		problem("the certificate expired at "+st.Certificate.ValidBefore.Format(time.RFC3339), loginHint)
	}

	// The server.
	srv := &st.Server
	srv.URL, srv.CAFingerprint = a.server, a.fingerprint
	if p := a.profile; p != nil {
		srv.TokenFile, srv.TokenEnv, srv.Issuer = p.TokenFile, p.TokenEnv, p.Issuer
		switch {
		case p.TokenFile != "":
			srv.TokenSource = "file"
		case p.TokenEnv != "":
			srv.TokenSource = "env"
		default:
			srv.TokenSource = "device"
		}
	}
	if a.server != "" {
		ca, err := statusAsk(ctx, a.server, a.fingerprint)
		if err != nil {
			err = loginExplain(err)
			srv.Error = err.Error()
			problem("the bastion does not answer: "+err.Error(), hints(err)...)
		} else {
			srv.Answers = true
			srv.SSHAddress = ca.SSHAddress
			if cert != nil && len(ca.UserCA) > 0 {
				signed := statusSignedBy(cert, ca.UserCA)
				st.Certificate.SignedByServer = &signed
				if !signed {
					problem("the certificate is not signed by this bastion's user CA", loginHint)
				}
			}
		}
	}
	st.OK = len(st.Problems) == 0

	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
	} else {
		statusPrint(e, &st)
	}
	if st.OK {
		return nil
	}
	return exitCode(exitFailure, withHint(errors.New("not ready: "+strings.Join(st.Problems, "; ")), hintList...))
}

// statusReadCertificate fills c from the certificate file at path and
// returns the certificate, or nil, with c.Error saying why.
func statusReadCertificate(c *statusCertificate, path string, now time.Time) *ssh.Certificate {
	c.File = path
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		c.Error = "no certificate at " + path
		return nil
	}
	if err != nil {
		c.Error = err.Error()
		return nil
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	cert, ok := pub.(*ssh.Certificate)
	if err != nil || !ok || cert.CertType != ssh.UserCert {
		c.Error = path + " is not an OpenSSH user certificate"
		return nil
	}
	c.Found = true
	c.Serial = cert.Serial
	c.KeyID = cert.KeyId
	c.Identity, c.Sponsor, c.Ticket, c.Grant = statusParseKeyID(cert.KeyId)
	c.Principals = append([]string{}, cert.ValidPrincipals...)
	c.ValidAfter = statusCertTime(cert.ValidAfter)
	c.ValidBefore = statusCertTime(cert.ValidBefore)
	c.Expired = !now.Before(c.ValidBefore)
	c.SecondsLeft = max(0, int64(c.ValidBefore.Sub(now)/time.Second))
	return cert
}

// statusCertTime is a certificate's time in UTC; "forever" is clamped to
// the end of year 9999, as far as RFC 3339 goes.
func statusCertTime(t uint64) time.Time {
	end := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	if t > math.MaxInt64 || int64(t) > end.Unix() {
		return end
	}
	return time.Unix(int64(t), 0).UTC()
}

// statusParseKeyID reads a key ID the bastion wrote ("agent-1@ci
// serial=42 for=alice ticket=OPS-7 grant=G-9", see [certauth.KeyID]). A
// key ID of another form names no identity.
func statusParseKeyID(keyID string) (identity, sponsor, ticket, grant string) {
	f := strings.Fields(keyID)
	if len(f) < 2 || !strings.HasPrefix(f[1], "serial=") {
		return "", "", "", ""
	}
	for _, kv := range f[2:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "for":
			sponsor = v
		case "ticket":
			ticket = v
		case "grant":
			grant = v
		}
	}
	return f[0], sponsor, ticket, grant
}

// statusAsk asks the bastion at server for its CA: the one request status
// sends, with no token.
func statusAsk(ctx context.Context, server, fingerprint string) (*certauth.CAResponse, error) {
	api, err := apiclient.NewClient(server, apiclient.ClientOptions{Fingerprint: fingerprint})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	return api.CA(ctx)
}

// statusSignedBy reports whether cert is signed by one of the user CA
// keys, in authorized_keys form.
func statusSignedBy(cert *ssh.Certificate, userCA []string) bool {
	for _, line := range userCA {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err == nil && bytes.Equal(k.Marshal(), cert.SignatureKey.Marshal()) {
			return true
		}
	}
	return false
}

// statusPrint writes st for people.
func statusPrint(e *env, st *statusJSON) {
	w, p := e.stdout, termtext.Line
	c, srv := &st.Certificate, &st.Server
	line := func(label, format string, a ...any) {
		fmt.Fprintf(w, "%-13s %s\n", label+":", fmt.Sprintf(format, a...))
	}
	switch {
	case !c.Found:
		line("identity", "unknown: %s", p(c.Error))
	default:
		id := c.Identity
		if id == "" {
			id = "key ID " + c.KeyID
		}
		var extra []string
		if c.Sponsor != "" {
			extra = append(extra, "for "+c.Sponsor)
		}
		if c.Ticket != "" {
			extra = append(extra, "ticket "+c.Ticket)
		}
		if c.Grant != "" {
			extra = append(extra, "grant "+c.Grant)
		}
		if len(extra) > 0 {
			id += " (" + strings.Join(extra, ", ") + ")"
		}
		line("identity", "%s", p(id))
		line("logins", "%s", p(strings.Join(c.Principals, ", ")))
		if c.Expired {
			line("expires", "EXPIRED at %s, %s ago", c.ValidBefore.Format(time.RFC3339), time.Since(c.ValidBefore).Round(time.Second))
		} else {
			line("expires", "%s, in %s", c.ValidBefore.Format(time.RFC3339), (time.Duration(c.SecondsLeft) * time.Second))
		}
		signed := ""
		if c.SignedByServer != nil && !*c.SignedByServer {
			signed = "; NOT signed by this bastion's user CA"
		}
		line("certificate", "%s (serial %d%s)", c.File, c.Serial, signed)
	}
	switch {
	case srv.URL == "":
		line("server", "unknown: no client profile names one")
	default:
		line("server", "%s", srv.URL)
		if srv.CAFingerprint != "" {
			line("pin", "%s", srv.CAFingerprint)
		} else {
			line("pin", "none: the server's TLS certificate must chain to a trusted root")
		}
		switch srv.TokenSource {
		case "file":
			line("token", "read from the file %s", srv.TokenFile)
		case "env":
			line("token", "read from $%s", srv.TokenEnv)
		case "device":
			if srv.Issuer != "" {
				line("token", "device flow with %s", p(srv.Issuer))
			} else {
				line("token", "device flow")
			}
		}
	}
	switch {
	case st.Profile.Found:
		line("profile", "%s", st.Profile.File)
	case st.Profile.File != "":
		line("profile", "none at %s", st.Profile.File)
	}
	switch {
	case srv.URL == "":
		line("answers", "not asked: no server known")
	case !srv.Answers:
		line("answers", "no: %s", p(srv.Error))
	case srv.SSHAddress != "":
		line("answers", "yes; SSH front door at %s", p(srv.SSHAddress))
	default:
		line("answers", "yes")
	}
}
