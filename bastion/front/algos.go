package front

import (
	"fmt"
	"runtime"
	"slices"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"
)

// The algorithms the front door offers. x/crypto adds the strict key
// exchange marker (kex-strict-s-v00@openssh.com, the Terrapin
// countermeasure) to every server's key exchange list by itself, and
// ext-info-s for server-sig-algs.
//
// Modern: no SHA-1, no CBC or CTR, no finite-field Diffie-Hellman, no
// NIST curves (which common audit tools fail), encrypt-then-MAC only.
// The MACs are used only if a client picks no AEAD cipher, which every
// cipher here is.
var (
	modernKEX = []string{ssh.KeyExchangeMLKEM768X25519, ssh.KeyExchangeCurve25519, "curve25519-sha256@libssh.org"}
	// modernCiphers: see modernCiphersFor.
	modernCiphers = modernCiphersFor(aesGCMHardware)
	modernMACs    = []string{ssh.HMACSHA256ETM, ssh.HMACSHA512ETM}
	// modernUserKeyAlgos are the client key (and certificate key)
	// algorithms accepted for authentication.
	modernUserKeyAlgos = []string{
		ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519,
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256,
		ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512,
	}
)

// aesGCMHardware reports whether Go runs AES-GCM with this CPU's own
// instructions (AES and carry-less multiplication), as crypto/tls decides
// whether to prefer it.
var aesGCMHardware = cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ ||
	cpu.ARM64.HasAES && cpu.ARM64.HasPMULL ||
	cpu.S390X.HasAES && cpu.S390X.HasAESCTR && cpu.S390X.HasGHASH ||
	runtime.GOARCH == "ppc64" || runtime.GOARCH == "ppc64le"

// modernCiphersFor are the ciphers the front door offers outside FIPS
// mode. With AES-GCM in hardware, AES-GCM only: the client picks the
// cipher, and OpenSSH clients list chacha20-poly1305 first, which x/crypto
// runs in plain Go on amd64, several times slower than its AES-GCM (a
// bulk session through the bastion spent more CPU sealing ChaCha20 than on
// anything else). Without it, ChaCha20-Poly1305 as well, first: there
// Go's software AES is the slower of the two and not constant-time.
func modernCiphersFor(aesHardware bool) []string {
	if aesHardware {
		return []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM}
	}
	return []string{ssh.CipherChaCha20Poly1305, ssh.CipherAES128GCM, ssh.CipherAES256GCM}
}

// FIPS 140-3 approved algorithms only (SP 800-56A ECDH on NIST curves,
// AES-GCM, HMAC-SHA-2, FIPS 186-5 ECDSA and RSA): the ssh { fips = true }
// option. ChaCha20-Poly1305, Curve25519, ML-KEM hybrids and Ed25519 are
// left out.
var (
	fipsKEX          = []string{ssh.KeyExchangeECDHP256, ssh.KeyExchangeECDHP384, ssh.KeyExchangeECDHP521}
	fipsCiphers      = []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM}
	fipsMACs         = []string{ssh.HMACSHA256ETM, ssh.HMACSHA512ETM}
	fipsUserKeyAlgos = []string{
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512,
	}
	// fipsSignatureFormats are the signature formats a certificate's CA
	// signature may have in FIPS mode.
	fipsSignatureFormats = []string{
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512,
	}
	// fipsHostKeyAlgos are the host key algorithms a FIPS client accepts
	// from an upstream target.
	fipsHostKeyAlgos = []string{
		ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
		ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSASHA512v01,
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512,
	}
)

// algorithmSet is what one mode (modern or FIPS) offers.
type algorithmSet struct {
	KeyExchanges, Ciphers, MACs []string
	// UserKeyAlgos are the client key algorithms accepted.
	UserKeyAlgos []string
}

// algorithms returns the set the front door offers: FIPS-approved only
// when fips is set.
func algorithms(fips bool) algorithmSet {
	if fips {
		return algorithmSet{KeyExchanges: slices.Clone(fipsKEX), Ciphers: slices.Clone(fipsCiphers), MACs: slices.Clone(fipsMACs), UserKeyAlgos: slices.Clone(fipsUserKeyAlgos)}
	}
	return algorithmSet{KeyExchanges: slices.Clone(modernKEX), Ciphers: slices.Clone(modernCiphers), MACs: slices.Clone(modernMACs), UserKeyAlgos: slices.Clone(modernUserKeyAlgos)}
}

// config is the ssh.Config of the set, for a server or a client.
func (a algorithmSet) config() ssh.Config {
	return ssh.Config{KeyExchanges: a.KeyExchanges, Ciphers: a.Ciphers, MACs: a.MACs}
}

// RestrictClientConfig limits a client configuration for an upstream SSH
// target to the algorithms of the front door's mode. With fips, only
// FIPS-approved key exchanges, ciphers, MACs and host key algorithms are
// left (host key algorithms already set are kept only if approved, in
// their order); it returns an error if none of those is left. Without
// fips it changes nothing: x/crypto's client defaults (no SHA-1, no CBC)
// are what an upstream target is reached with.
func RestrictClientConfig(cc *ssh.ClientConfig, fips bool) error {
	if !fips {
		return nil
	}
	cc.Config = algorithms(true).config()
	if len(cc.HostKeyAlgorithms) == 0 {
		cc.HostKeyAlgorithms = slices.Clone(fipsHostKeyAlgos)
		return nil
	}
	kept := slices.DeleteFunc(slices.Clone(cc.HostKeyAlgorithms), func(a string) bool { return !slices.Contains(fipsHostKeyAlgos, a) })
	if len(kept) == 0 {
		return fmt.Errorf("ssh: none of the host key algorithms %v is FIPS-approved", cc.HostKeyAlgorithms)
	}
	cc.HostKeyAlgorithms = kept
	return nil
}

// fipsSignature reports whether a certificate's CA signature is FIPS-approved.
func fipsSignature(cert *ssh.Certificate) bool {
	return cert.Signature != nil && slices.Contains(fipsSignatureFormats, cert.Signature.Format)
}

// Algorithms are the key exchanges, ciphers and MACs the front door
// offers its clients: FIPS-approved ones only when fips is set.
func Algorithms(fips bool) ssh.Config { return algorithms(fips).config() }
