package front

import (
	"slices"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestRestrictClientConfig(t *testing.T) {
	t.Parallel()
	cc := &ssh.ClientConfig{}
	if err := RestrictClientConfig(cc, false); err != nil || cc.KeyExchanges != nil || cc.HostKeyAlgorithms != nil {
		t.Fatalf("non-FIPS changed the config: %+v %v", cc, err)
	}
	if err := RestrictClientConfig(cc, true); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cc.KeyExchanges, fipsKEX) || !slices.Equal(cc.Ciphers, fipsCiphers) || !slices.Equal(cc.HostKeyAlgorithms, fipsHostKeyAlgos) {
		t.Fatalf("FIPS config: %+v", cc.Config)
	}
	cc = &ssh.ClientConfig{HostKeyAlgorithms: []string{ssh.CertAlgoED25519v01, ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256}}
	if err := RestrictClientConfig(cc, true); err != nil || !slices.Equal(cc.HostKeyAlgorithms, []string{ssh.KeyAlgoECDSA256}) {
		t.Fatalf("host key algorithms %v, %v", cc.HostKeyAlgorithms, err)
	}
	cc = &ssh.ClientConfig{HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}}
	if err := RestrictClientConfig(cc, true); err == nil {
		t.Fatal("ed25519 only: no error")
	}
}

// TestCipherOffer: the front door offers a subset of the modern ciphers
// it always offered (nothing weaker), AES-GCM only where the CPU runs it
// in hardware; elsewhere it keeps ChaCha20-Poly1305, first.
func TestCipherOffer(t *testing.T) {
	always := []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305}
	for _, hw := range []bool{true, false} {
		got := modernCiphersFor(hw)
		for _, c := range got {
			if !slices.Contains(always, c) {
				t.Errorf("AES hardware %v: offers %s", hw, c)
			}
		}
		if slices.Contains(got, ssh.CipherChaCha20Poly1305) == hw || !slices.Contains(got, ssh.CipherAES128GCM) {
			t.Errorf("AES hardware %v: offers %v", hw, got)
		}
	}
	if !slices.Equal(algorithms(false).Ciphers, modernCiphersFor(aesGCMHardware)) {
		t.Fatalf("the front door offers %v", algorithms(false).Ciphers)
	}
	if want := modernCiphersFor(aesGCMHardware)[0]; want != ssh.CipherChaCha20Poly1305 && !aesGCMHardware || want != ssh.CipherAES128GCM && aesGCMHardware {
		t.Fatalf("first offered %s (AES hardware %v)", want, aesGCMHardware)
	}
	if a := Algorithms(true); !slices.Equal(a.KeyExchanges, fipsKEX) || !slices.Equal(a.Ciphers, fipsCiphers) || !slices.Equal(a.MACs, fipsMACs) {
		t.Fatalf("FIPS mode offers %+v", a)
	}
	if a := Algorithms(false); !slices.Equal(a.KeyExchanges, modernKEX) || !slices.Equal(a.Ciphers, modernCiphers) || !slices.Equal(a.MACs, modernMACs) {
		t.Fatalf("the default mode offers %+v", a)
	}
}
