package certauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/bastionhq/bastion/storage"
)

// Files of the API's self-signed TLS certificate, under the home directory.
const (
	TLSDir      = "tls"
	TLSCertFile = "api.crt"
	TLSKeyFile  = "api.key"
)

// selfSignedLifetime is how long a self-signed API certificate lasts; it is
// made anew (with a new fingerprint, which serve prints) once less than
// selfSignedRenew is left.
const (
	selfSignedLifetime = 365 * 24 * time.Hour
	selfSignedRenew    = 30 * 24 * time.Hour
)

// APICertificate is the API's TLS certificate and how clients pin it.
type APICertificate struct {
	Cert        tls.Certificate
	Fingerprint string
	// SelfSigned is set when bastion made the certificate: clients must
	// pin Fingerprint ("bastion login --ca-fingerprint").
	SelfSigned bool
	// Created is set when the certificate was made by this call.
	Created bool
}

// LoadTLS loads the API's TLS certificate: the configured certFile and
// keyFile if given, else a self-signed certificate kept in home/tls/, made
// on first use for hosts (names or IP addresses), and made anew when it is
// about to expire.
func LoadTLS(home, certFile, keyFile string, hosts []string, now time.Time) (*APICertificate, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a TLS certificate needs both a certificate file and a key file")
	}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load TLS certificate %s: %w", certFile, err)
		}
		return &APICertificate{Cert: c, Fingerprint: TLSFingerprint(c.Leaf)}, nil
	}
	dir := filepath.Join(home, TLSDir)
	cp, kp := filepath.Join(dir, TLSCertFile), filepath.Join(dir, TLSKeyFile)
	keyPEM, err := storage.ReadPrivateFile(kp)
	if err == nil {
		certPEM, err := os.ReadFile(cp)
		if err != nil {
			return nil, fmt.Errorf("load the API's self-signed certificate: %w", err)
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("load the API's self-signed certificate %s: %w", cp, err)
		}
		if now.Add(selfSignedRenew).Before(c.Leaf.NotAfter) && coversHosts(c.Leaf, hosts) {
			return &APICertificate{Cert: c, Fingerprint: TLSFingerprint(c.Leaf), SelfSigned: true}, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	c, err := makeSelfSigned(dir, cp, kp, hosts, now)
	if err != nil {
		return nil, err
	}
	return &APICertificate{Cert: *c, Fingerprint: TLSFingerprint(c.Leaf), SelfSigned: true, Created: true}, nil
}

func coversHosts(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if c.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func makeSelfSigned(dir, certPath, keyPath string, hosts []string, now time.Time) (*tls.Certificate, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "bastion API (self-signed)"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := storage.WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := storage.WriteFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// ServerTLSConfig is the API's TLS configuration: TLS 1.2 at least, Go's
// default (AEAD, forward-secret) cipher suites.
func ServerTLSConfig(c *APICertificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{c.Cert},
	}
}
