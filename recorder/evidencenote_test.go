package recorder

import (
	"strings"
	"testing"
)

func TestEvidenceNote(t *testing.T) {
	key := testKey(t)
	h := strings.Repeat("ab", 32)
	j := strings.Repeat("cd", 32)
	n := &EvidenceNote{Origin: key.Signer.Name(), Leaf: 42, SHA256HTML: h, SHA256JSON: j}
	msg, err := SignEvidenceNote(key, n)
	if err != nil {
		t.Fatal(err)
	}
	want := "bastion evidence report v1\n" + key.Signer.Name() + "\nleaf 42\nsha256 evidence.html " + h + "\nsha256 evidence.json " + j + "\n\n"
	if !strings.HasPrefix(string(msg), want) {
		t.Errorf("signed note:\n%s\nwant it to start with\n%s", msg, want)
	}
	got, err := OpenEvidenceNote(msg, key.Verifier)
	if err != nil || *got != *n {
		t.Fatalf("OpenEvidenceNote = %+v, %v; want %+v", got, err, n)
	}
	// Never a checkpoint of the log.
	if _, err := OpenCheckpoint(msg, key.Verifier); err == nil {
		t.Error("an evidence note opens as a checkpoint")
	}
	for _, bad := range []*EvidenceNote{
		{Origin: key.Signer.Name(), Leaf: 1, SHA256HTML: "x", SHA256JSON: j},
		{Origin: key.Signer.Name(), Leaf: 1, SHA256HTML: h, SHA256JSON: j + "\nleaf 2"},
		{Origin: key.Signer.Name(), Leaf: -1, SHA256HTML: h, SHA256JSON: j},
		{Origin: "other.example/log", Leaf: 1, SHA256HTML: h, SHA256JSON: j},
	} {
		if _, err := SignEvidenceNote(key, bad); err == nil {
			t.Errorf("signed %+v", bad)
		}
	}
	// A changed byte does not open.
	tampered := strings.Replace(string(msg), "leaf 42", "leaf 43", 1)
	if _, err := OpenEvidenceNote([]byte(tampered), key.Verifier); err == nil {
		t.Error("a changed note opens")
	}
}
