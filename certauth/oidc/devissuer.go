package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/bastionhq/bastion/storage"
)

// Names inside the home directory of the development issuer's files.
const (
	DevDir        = "dev"
	DevKeyFile    = "issuer.key"
	DevIssuerFile = "issuer.json"
)

// DevAudience is the audience the development issuer mints tokens for
// unless told otherwise, and the client ID a bastion in development mode
// expects.
const DevAudience = "bastion"

// Lifetimes of minted tokens.
const (
	DevDefaultTTL = 10 * time.Minute
	DevMaxTTL     = 24 * time.Hour
)

// devAlg is the only signing algorithm of the development issuer.
const devAlg = jose.ES256

// ErrNoDevIssuer means no serving process has published a development
// issuer URL in the home directory, so there is nothing to mint for.
var ErrNoDevIssuer = errors.New("no development issuer has been published")

// ErrReservedClaim means an extra claim given to [DevIssuer.Mint] would
// override one the issuer sets itself.
var ErrReservedClaim = errors.New("reserved claim")

// devReservedClaims are the claims [DevIssuer.Mint] sets itself and
// extra claims may not override.
var devReservedClaims = []string{"iss", "sub", "aud", "iat", "nbf", "exp"}

// DevIssuer is an OpenID provider for development and demos only.
//
// "bastion demo" and "bastion serve --dev" use it so that the whole product
// can be tried on one machine through the real token verification path
// (discovery, JWKS, signature, audience, expiry) without an identity
// provider. Anyone who can read the home directory can mint any identity
// with it: a production bastion must never trust it.
//
// # Files
//
// Everything lives in the dev directory of the bastion home directory,
// created with mode 0700:
//
//	dev/issuer.key   the signing key: ECDSA P-256 (ES256), PKCS #8 in PEM,
//	                 mode 0600; created on first use, never replaced, and
//	                 refused if group or others may read it
//	dev/issuer.json  the issuer URL the serving process answers on, written
//	                 by [DevIssuer.Publish] and replaced atomically:
//	                 {"issuer": "http://127.0.0.1:PORT", "audience": "bastion"}
//
// # Two processes
//
// The server opens the issuer ([OpenDevIssuer]), listens on loopback
// ([DevIssuer.Listen]), configures its token verifier for the URL and
// publishes it ([DevIssuer.Publish]). "bastion dev token" in another process
// loads the same key and URL ([LoadDevIssuer]) and mints tokens locally
// ([DevIssuer.Mint]) that the running server accepts: minting needs no
// network. A server that stopped leaves its URL behind; tokens minted for
// it are refused by the next server, which publishes its own.
//
// Its methods may be called from several goroutines.
type DevIssuer struct {
	dir string
	key jose.JSONWebKey // private key; KeyID is the RFC 7638 thumbprint

	// now is the clock of Mint and of the authorization-code flow; nil
	// means time.Now. Tests set it before any other use.
	now func() time.Time

	mu       sync.Mutex
	issuer   string // guarded by mu; "" until SetIssuer, Publish or Listen
	audience string // guarded by mu; default audience of Mint

	// The authorization-code flow (devauthorize.go), guarded by mu.
	clients map[string]DevWebClient    // registered web clients by ID
	pending map[string]*devAuthRequest // requests waiting for the picker, by request ID
	codes   map[string]*devCode        // issued codes
}

// devIssuerInfo is the content of dev/issuer.json.
type devIssuerInfo struct {
	Issuer   string `json:"issuer"`
	Audience string `json:"audience"`
}

// OpenDevIssuer opens the development issuer of the bastion home
// directory home, for the process that serves it. On first use it creates
// home/dev and a new signing key; afterwards it loads the key, and the
// issuer URL if one was published.
func OpenDevIssuer(home string) (*DevIssuer, error) {
	dir := filepath.Join(home, DevDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create development issuer directory: %w", err)
	}
	info, err := readDevIssuerInfo(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	p := filepath.Join(dir, DevKeyFile)
	priv, err := loadDevKey(p)
	if errors.Is(err, fs.ErrNotExist) {
		priv, err = createDevKey(p)
	}
	if err != nil {
		return nil, err
	}
	return newDevIssuer(dir, priv, info)
}

// LoadDevIssuer loads the development issuer a serving process published
// in the bastion home directory home, to mint tokens it accepts. It
// creates nothing, and fails with [ErrNoDevIssuer] if no issuer URL has
// been published there.
func LoadDevIssuer(home string) (*DevIssuer, error) {
	dir := filepath.Join(home, DevDir)
	info, err := readDevIssuerInfo(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoDevIssuer, home)
	}
	if err != nil {
		return nil, err
	}
	priv, err := loadDevKey(filepath.Join(dir, DevKeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s: %s has an issuer URL but no signing key", ErrNoDevIssuer, home, DevDir)
	}
	if err != nil {
		return nil, err
	}
	return newDevIssuer(dir, priv, info)
}

// readDevIssuerInfo reads dev/issuer.json in dir; its error satisfies
// errors.Is(err, fs.ErrNotExist) if there is none.
func readDevIssuerInfo(dir string) (devIssuerInfo, error) {
	p := filepath.Join(dir, DevIssuerFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return devIssuerInfo{}, err
	}
	var info devIssuerInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return devIssuerInfo{}, fmt.Errorf("%s: %w", p, err)
	}
	if err := checkDevIssuerURL(info.Issuer); err != nil {
		return devIssuerInfo{}, fmt.Errorf("%s: %w", p, err)
	}
	return info, nil
}

// newDevIssuer returns the issuer of dir with key priv and the published
// info, which may be zero.
func newDevIssuer(dir string, priv *ecdsa.PrivateKey, info devIssuerInfo) (*DevIssuer, error) {
	d := &DevIssuer{dir: dir, issuer: info.Issuer, audience: info.Audience}
	if d.audience == "" {
		d.audience = DevAudience
	}
	d.key = jose.JSONWebKey{Key: priv, Algorithm: string(devAlg), Use: "sig"}
	tp, err := d.key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("development issuer key thumbprint: %w", err)
	}
	d.key.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return d, nil
}

// loadDevKey reads the signing key at p, refusing a file that group or
// others may read.
func loadDevKey(p string) (*ecdsa.PrivateKey, error) {
	b, err := storage.ReadPrivateFile(p)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM \"PRIVATE KEY\"", p)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s: not an ECDSA P-256 key", p)
	}
	return ec, nil
}

// createDevKey generates a signing key and writes it to p. The file
// appears whole or not at all; if another process created it first, its
// key is used.
func createDevKey(p string) (*ecdsa.PrivateKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	dir := filepath.Dir(p)
	tmp, err := devWriteTemp(dir, ".issuer-key-*", data, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	// A hard link, unlike a rename, fails if the name exists.
	if err := os.Link(tmp, p); errors.Is(err, fs.ErrExist) {
		return loadDevKey(p)
	} else if err != nil {
		return nil, err
	}
	if err := storage.SyncDir(dir); err != nil {
		return nil, err
	}
	return priv, nil
}

// devWriteTemp writes data to a new temporary file in dir with mode perm,
// syncs it and returns its name.
func devWriteTemp(dir, pattern string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	name := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// keyID is the key ID of the signing key: its RFC 7638 JWK thumbprint
// (SHA-256, unpadded base64url). It names the key in /jwks and in the
// header of every token.
func (d *DevIssuer) keyID() string { return d.key.KeyID }

// Issuer returns the issuer URL, or "" if none has been set, published or
// loaded from the home directory.
func (d *DevIssuer) Issuer() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.issuer
}

// SetIssuer sets the issuer URL this process serves and mints for, without
// publishing it. It must be an absolute URL without query or fragment:
// https, or http on a loopback host.
func (d *DevIssuer) SetIssuer(issuerURL string) error {
	if err := checkDevIssuerURL(issuerURL); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.issuer = issuerURL
	return nil
}

// Publish sets the issuer URL like [DevIssuer.SetIssuer] and writes it to
// dev/issuer.json, replacing the file atomically, so that other processes
// using the same home mint tokens for it.
func (d *DevIssuer) Publish(issuerURL string) error {
	if err := d.SetIssuer(issuerURL); err != nil {
		return err
	}
	b, err := json.MarshalIndent(devIssuerInfo{Issuer: issuerURL, Audience: DevAudience}, "", "  ")
	if err != nil {
		return err
	}
	if err := storage.WriteFileAtomic(filepath.Join(d.dir, DevIssuerFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("publish development issuer: %w", err)
	}
	d.mu.Lock()
	d.audience = DevAudience
	d.mu.Unlock()
	return nil
}

func checkDevIssuerURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("development issuer URL: %w", err)
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return fmt.Errorf("development issuer URL %q: want scheme://host[:port][/path]", s)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && devLoopbackHost(u.Hostname()):
		return nil
	}
	return fmt.Errorf("development issuer URL %q: want https, or http on a loopback address", s)
}

// devLoopbackHost reports whether host is "localhost" or a loopback IP.
func devLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Listen opens a plain-HTTP listener on the loopback address addr
// ("127.0.0.1:0" if empty: any free port) and sets the issuer URL to
// "http://ADDR" of the listener. It refuses an address that is not
// loopback: the development issuer is never reachable from elsewhere.
// Listen does not publish the URL; call [DevIssuer.Publish] for that.
//
// serve serves [DevIssuer.Handler] until ctx is canceled, then shuts the
// server down (waiting up to 5 seconds for requests in flight) and returns
// nil, or the error that stopped it earlier. The caller must call serve
// exactly once: it owns the listener and closes it.
func (d *DevIssuer) Listen(addr string) (issuerURL string, serve func(ctx context.Context) error, err error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, fmt.Errorf("development issuer address: %w", err)
	}
	if !devLoopbackHost(host) {
		return "", nil, fmt.Errorf("development issuer address %q is not a loopback address: it only listens on 127.0.0.1, ::1 or localhost", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("development issuer: %w", err)
	}
	tcp, ok := ln.Addr().(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() {
		ln.Close()
		return "", nil, fmt.Errorf("development issuer address %q resolved to %v, not a loopback address", addr, ln.Addr())
	}
	issuerURL = "http://" + tcp.String()
	if err := d.SetIssuer(issuerURL); err != nil {
		ln.Close()
		return "", nil, err
	}
	srv := &http.Server{
		Handler:           d.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	serve = func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			return fmt.Errorf("development issuer: %w", err)
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("development issuer: %w", err)
		}
		return nil
	}
	return issuerURL, serve, nil
}

// devDiscovery is the OpenID Provider Metadata the issuer serves.
type devDiscovery struct {
	Issuer                           string   `json:"issuer"`
	AuthorizationEndpoint            string   `json:"authorization_endpoint"`
	TokenEndpoint                    string   `json:"token_endpoint"`
	JWKSURI                          string   `json:"jwks_uri"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	GrantTypesSupported              []string `json:"grant_types_supported"`
	CodeChallengeMethodsSupported    []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethods         []string `json:"token_endpoint_auth_methods_supported"`
	ScopesSupported                  []string `json:"scopes_supported"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	ClaimsSupported                  []string `json:"claims_supported"`
}

// Handler serves the issuer at its root; mount it under the issuer URL's
// path (with [http.StripPrefix]) if that has one:
//
//	GET /.well-known/openid-configuration   discovery, for the issuer URL
//	                                        set by SetIssuer, Publish or Listen
//	GET /jwks                               the public key, with its KeyID
//	GET /authorize                          the authorization-code flow
//	                                        with PKCE (S256) for a web
//	                                        client registered with
//	                                        RegisterWebClient: a page to
//	                                        pick a dev identity
//	POST /authorize                         the page's form; redirects
//	                                        to the client with a code
//	POST /token                             redeems a code for an ID
//	                                        token and an access token
//
// Tokens for the command line and agents come from "bastion dev token".
// Until an issuer URL is set, discovery answers 503.
func (d *DevIssuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		iss := d.Issuer()
		if iss == "" {
			devError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the development issuer has no issuer URL yet")
			return
		}
		base := strings.TrimSuffix(iss, "/")
		devJSON(w, http.StatusOK, devDiscovery{
			Issuer:                           iss,
			AuthorizationEndpoint:            base + "/authorize",
			TokenEndpoint:                    base + "/token",
			JWKSURI:                          base + "/jwks",
			ResponseTypesSupported:           []string{"code"},
			GrantTypesSupported:              []string{"authorization_code"},
			CodeChallengeMethodsSupported:    []string{"S256"},
			TokenEndpointAuthMethods:         []string{"client_secret_basic", "client_secret_post", "none"},
			ScopesSupported:                  []string{"openid"},
			SubjectTypesSupported:            []string{"public"},
			IDTokenSigningAlgValuesSupported: []string{string(devAlg)},
			ClaimsSupported:                  []string{"iss", "sub", "aud", "iat", "nbf", "exp", "jti", "act", "nonce", "azp"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		devJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{d.key.Public()}})
	})
	mux.HandleFunc("GET /authorize", d.authorize)
	mux.HandleFunc("POST /authorize", d.authorizeSubmit)
	mux.HandleFunc("POST /token", d.token)
	return mux
}

func devJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func devError(w http.ResponseWriter, code int, oauthErr, desc string) {
	devJSON(w, code, map[string]string{"error": oauthErr, "error_description": desc})
}

// Mint returns an ID token (a compact JWS, ES256) for the issuer URL, with
// the claims iss, sub, aud, iat, nbf (both now), exp (now + ttl) and a
// random jti, plus claims. claims may not set iss, sub, aud, iat, nbf or
// exp; it may set jti, to try replay protection. An empty audience means
// the published audience, else [DevAudience]; a zero ttl means
// [DevDefaultTTL]; ttl may not exceed [DevMaxTTL]. The header names the
// key (kid) and has typ JWT.
//
// Mint fails with [ErrNoDevIssuer] if no issuer URL is set.
func (d *DevIssuer) Mint(sub string, audience []string, claims map[string]any, ttl time.Duration) (string, error) {
	d.mu.Lock()
	iss, defAud := d.issuer, d.audience
	d.mu.Unlock()
	switch {
	case iss == "":
		return "", ErrNoDevIssuer
	case sub == "":
		return "", errors.New("mint: empty subject")
	case ttl < 0:
		return "", fmt.Errorf("mint: negative lifetime %v", ttl)
	case ttl > DevMaxTTL:
		return "", fmt.Errorf("mint: lifetime %v is longer than the maximum, %v", ttl, DevMaxTTL)
	case ttl == 0:
		ttl = DevDefaultTTL
	}
	if len(audience) == 0 {
		audience = []string{defAud}
	}
	for _, a := range audience {
		if a == "" {
			return "", errors.New("mint: empty audience")
		}
	}
	payload := make(map[string]any, len(claims)+7)
	for k, v := range claims {
		for _, r := range devReservedClaims {
			if k == r {
				return "", fmt.Errorf("mint: %w %q: the issuer sets it", ErrReservedClaim, k)
			}
		}
		payload[k] = v
	}
	if _, ok := payload["jti"]; !ok {
		var b [16]byte
		rand.Read(b[:])
		payload["jti"] = base64.RawURLEncoding.EncodeToString(b[:])
	}
	now := time.Now
	if d.now != nil {
		now = d.now
	}
	t := now()
	payload["iss"] = iss
	payload["sub"] = sub
	payload["aud"] = jwt.Audience(audience)
	payload["iat"] = jwt.NewNumericDate(t)
	payload["nbf"] = jwt.NewNumericDate(t)
	payload["exp"] = jwt.NewNumericDate(t.Add(ttl))
	body, err := json.Marshal(payload)
	if err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: devAlg, Key: d.key},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	jws, err := signer.Sign(body)
	if err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	return jws.CompactSerialize()
}
