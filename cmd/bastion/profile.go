package main

// The client profile: what "bastion login" remembers so that the commands
// that call the bastion's API as the user ("grants …", "status", a later
// "login") need no connection flags.
//
// The profile names the server, the pin of its TLS certificate, where the
// user's token comes from (a file's path, an environment variable's name,
// or the device flow), and the key and known_hosts files login used. It
// never holds a token or a key: nothing in it is secret. It is still
// guarded, because it says where tokens are sent: it is written 0600 in a
// 0700 directory, and a profile that another user owns or may write is
// refused.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/bastionhq/bastion/certauth/apiclient"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage"
)

// profileVersion is the "version" of the profiles this build writes and
// reads.
const profileVersion = 1

// profileMaxSize caps the profile read: it is a few hundred bytes.
const profileMaxSize = 64 << 10

// A clientProfile is the file "bastion login" writes after a successful
// login. Fields are only ever added; one not given is omitted.
type clientProfile struct {
	Version int `json:"version"`
	// Server is the API's URL, with its scheme.
	Server string `json:"server"`
	// CAFingerprint pins the API's TLS certificate ("SHA256:…"); empty
	// when the certificate chains to a trusted root.
	CAFingerprint string `json:"ca_fingerprint,omitempty"`
	// TokenFile (an absolute path) or TokenEnv (a variable's name) is
	// where the token is read, at every use; with neither, the device
	// flow runs, with the identity provider Issuer names ("" for the only
	// one the bastion offers).
	TokenFile string `json:"token_file,omitempty"`
	TokenEnv  string `json:"token_env,omitempty"`
	Issuer    string `json:"issuer,omitempty"`
	// Key and KnownHosts are the absolute paths login used.
	Key        string `json:"key,omitempty"`
	KnownHosts string `json:"known_hosts,omitempty"`
}

// profilePath returns where the profile is: the value of --profile if
// not empty, else $BASTION_PROFILE, else bastion/profile.json in
// $XDG_CONFIG_HOME (if absolute, as the XDG specification wants), else in
// ~/.config.
func (e *env) profilePath(flagValue string) (string, error) {
	p := flagValue
	if p == "" {
		p = e.getenv("BASTION_PROFILE")
	}
	if p == "" {
		dir := e.getenv("XDG_CONFIG_HOME")
		if !filepath.IsAbs(dir) {
			home := e.getenv("HOME")
			if home == "" {
				return "", errors.New("cannot find the client profile: $HOME is not set")
			}
			dir = filepath.Join(home, ".config")
		}
		p = filepath.Join(dir, "bastion", "profile.json")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("client profile %s: %w", p, err)
	}
	return abs, nil
}

// loadProfile reads the profile at path. A missing file is no profile:
// nil and no error.
func loadProfile(path string) (*clientProfile, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client profile: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("client profile: %w", err)
	}
	if err := profileFileSafe(path, fi); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, profileMaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("client profile: %w", err)
	}
	if len(b) > profileMaxSize {
		return nil, fmt.Errorf("client profile %s is larger than %d KiB: not a profile", path, profileMaxSize>>10)
	}
	var p clientProfile
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, withHint(fmt.Errorf("client profile %s: %w", path, err), profileRedoHint)
	}
	if err := p.check(); err != nil {
		return nil, withHint(fmt.Errorf("client profile %s: %w", path, err), profileRedoHint)
	}
	return &p, nil
}

const profileRedoHint = `log in again with "bastion login --server URL …" to write it afresh`

// profileFileSafe refuses a profile that is not a regular file, or that
// someone else could have written: it says where tokens go.
func profileFileSafe(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("client profile %s is not a regular file", path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() && st.Uid != 0 {
		return withHint(fmt.Errorf("client profile %s belongs to uid %d, not to you (uid %d): refusing to use it", path, st.Uid, os.Getuid()),
			"remove it and log in again, or name your own with --profile FILE")
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return withHint(fmt.Errorf("client profile %s may be written by others (mode %04o): refusing to use it", path, fi.Mode().Perm()),
			"chmod 600 "+termtext.ShellJoin([]string{path})+", check what it names, or log in again to write it afresh")
	}
	return nil
}

// check refuses a profile this build cannot use.
func (p *clientProfile) check() error {
	switch {
	case p.Version != profileVersion:
		return fmt.Errorf("version %d, but this bastion reads version %d", p.Version, profileVersion)
	case p.Server == "":
		return errors.New("it names no server")
	case p.TokenFile != "" && p.TokenEnv != "":
		return errors.New("it names both a token file and a token variable")
	case p.TokenFile != "" && !filepath.IsAbs(p.TokenFile),
		p.Key != "" && !filepath.IsAbs(p.Key),
		p.KnownHosts != "" && !filepath.IsAbs(p.KnownHosts):
		return errors.New("its paths must be absolute")
	}
	if _, err := apiclient.NewClient(p.Server, apiclient.ClientOptions{Fingerprint: p.CAFingerprint}); err != nil {
		return err
	}
	return nil
}

// saveProfile writes p to path atomically, mode 0600, making its
// directory (0700) if missing.
func saveProfile(path string, p *clientProfile) error {
	p.Version = profileVersion
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("client profile: %w", err)
	}
	if err := storage.WriteFileAtomic(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("client profile: %w", err)
	}
	return nil
}

// serverURL is how a --server value is written once it has a scheme.
func serverURL(s string) string {
	if s != "" && !strings.Contains(s, "://") {
		s = "https://" + s
	}
	return s
}

// sameServer reports whether two server URLs name the same API.
func sameServer(a, b string) bool {
	return strings.EqualFold(strings.TrimRight(serverURL(a), "/"), strings.TrimRight(serverURL(b), "/"))
}
