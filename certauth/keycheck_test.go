package certauth

import (
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func FuzzParsePublicKey(f *testing.F) {
	pub, _, _ := ed25519.GenerateKey(nil)
	k, _ := ssh.NewPublicKey(pub)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	f.Add(line)
	f.Add(line + " comment")
	f.Add("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7")
	f.Add("ssh-dss AAAAB3NzaC1kc3MAAACBAP")
	f.Add(`command="x" ` + line)
	f.Add("ssh-ed25519-cert-v01@openssh.com AAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, text string) {
		key, err := ParsePublicKey(text, 0)
		if err != nil {
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Reason == "" || ke.Msg == "" {
				t.Fatalf("error %v is not a KeyError with a reason", err)
			}
			return
		}
		if _, ok := key.(*ssh.Certificate); ok {
			t.Fatal("a certificate was accepted as a key")
		}
		if !acceptedKeyTypes[key.Type()] {
			t.Fatalf("key type %s accepted", key.Type())
		}
		if key.Type() == ssh.KeyAlgoRSA {
			if n := key.(ssh.CryptoPublicKey).CryptoPublicKey().(*rsa.PublicKey).N.BitLen(); n < DefaultMinRSABits {
				t.Fatalf("RSA key of %d bits accepted", n)
			}
		}
	})
}

func TestParsePublicKeyAccepts(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	k, _ := ssh.NewPublicKey(pub)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	for _, in := range []string{line, line + " user@host", "  " + line + "\n"} {
		got, err := ParsePublicKey(in, 0)
		if err != nil || string(got.Marshal()) != string(k.Marshal()) {
			t.Errorf("%q: %v", in, err)
		}
	}
	if _, err := ParsePublicKey(strings.Repeat("A", maxPublicKeyText+1), 0); err == nil {
		t.Error("oversized key accepted")
	}
}
