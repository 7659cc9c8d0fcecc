package certauth

import (
	"bytes"
	"crypto/rsa"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/recorder/events"
)

// DefaultMinRSABits is the smallest RSA key the bastion certifies unless
// configured otherwise (NIST SP 800-131A: 2048 bits at least).
const DefaultMinRSABits = 2048

// maxPublicKeyText bounds the public key text of a request: the largest
// RSA key OpenSSH makes (16384 bits) is under 3 KiB in authorized_keys form.
const maxPublicKeyText = 8 << 10

// A KeyError says why a public key was refused: Reason is one of the key
// codes of package events ([events.ReasonKeyMalformed] and those after it),
// as ErrorResponse.Reason and in the journal.
type KeyError struct {
	Reason string
	Msg    string
}

func (e *KeyError) Error() string { return e.Msg }

func keyErrorf(reason, format string, args ...any) *KeyError {
	return &KeyError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// keyAlgoDSA names DSA keys, which x/crypto no longer knows.
const keyAlgoDSA = "ssh-dss"

// acceptedKeyTypes are the key types bastion certifies. DSA is gone from
// OpenSSH; anything unknown is refused rather than passed on.
var acceptedKeyTypes = map[string]bool{
	ssh.KeyAlgoED25519:    true,
	ssh.KeyAlgoECDSA256:   true,
	ssh.KeyAlgoECDSA384:   true,
	ssh.KeyAlgoECDSA521:   true,
	ssh.KeyAlgoRSA:        true,
	ssh.KeyAlgoSKED25519:  true,
	ssh.KeyAlgoSKECDSA256: true,
}

// ParsePublicKey parses the public key of a certificate request: one key in
// authorized_keys form ("ssh-ed25519 AAAA… comment"), without options. It
// refuses, with a *KeyError, anything malformed, a certificate in place of
// a key, DSA and unknown types, and RSA keys shorter than minRSABits.
func ParsePublicKey(text string, minRSABits int) (ssh.PublicKey, error) {
	if minRSABits <= 0 {
		minRSABits = DefaultMinRSABits
	}
	if len(text) > maxPublicKeyText {
		return nil, keyErrorf(events.ReasonKeyMalformed, "public key is %d bytes, more than the %d a key can take", len(text), maxPublicKeyText)
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, keyErrorf(events.ReasonKeyMalformed, "no public key given: send one in authorized_keys form, for example the content of ~/.ssh/id_ed25519.pub")
	}
	if strings.ContainsAny(text, "\r\n") {
		return nil, keyErrorf(events.ReasonKeyMalformed, "public key must be one line in authorized_keys form")
	}
	if f := strings.Fields(text); len(f) > 0 && f[0] == keyAlgoDSA {
		// Refused by name: x/crypto no longer parses DSA at all.
		return nil, keyErrorf(events.ReasonKeyTypeRefused, "DSA keys are refused (OpenSSH removed them): use ed25519")
	}
	key, _, options, rest, err := ssh.ParseAuthorizedKey([]byte(text))
	if err != nil {
		return nil, keyErrorf(events.ReasonKeyMalformed, "public key is not in authorized_keys form (TYPE BASE64 [COMMENT]): %v", err)
	}
	if len(options) > 0 {
		return nil, keyErrorf(events.ReasonKeyMalformed, "public key carries authorized_keys options (%s): send the key alone", strings.Join(options, ","))
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, keyErrorf(events.ReasonKeyMalformed, "more than one public key given")
	}
	if _, ok := key.(*ssh.Certificate); ok {
		return nil, keyErrorf(events.ReasonKeyIsCertificate, "a certificate was given in place of a public key: send the key itself (the .pub file, not -cert.pub)")
	}
	typ := key.Type()
	if !acceptedKeyTypes[typ] {
		return nil, keyErrorf(events.ReasonKeyTypeRefused, "key type %s is not accepted: use ed25519, ECDSA or RSA of at least %d bits", typ, minRSABits)
	}
	if typ == ssh.KeyAlgoRSA {
		ck, ok := key.(ssh.CryptoPublicKey)
		if !ok {
			return nil, keyErrorf(events.ReasonKeyMalformed, "RSA key cannot be read")
		}
		rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return nil, keyErrorf(events.ReasonKeyMalformed, "RSA key cannot be read")
		}
		if bits := rk.N.BitLen(); bits < minRSABits {
			return nil, keyErrorf(events.ReasonKeyTooWeak, "RSA key has %d bits, fewer than the %d required: use ed25519, or RSA of at least %d bits", bits, minRSABits, minRSABits)
		}
		if rk.E < 3 || rk.E%2 == 0 {
			return nil, keyErrorf(events.ReasonKeyTooWeak, "RSA key has an unusable public exponent %d", rk.E)
		}
	}
	return key, nil
}
