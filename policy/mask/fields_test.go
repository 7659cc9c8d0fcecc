package mask

import (
	"strings"
	"testing"
)

func TestText(t *testing.T) {
	m, err := Compile(Profile{Detectors: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	in := "echo card 4111111111111111 password=hunter2"
	out, hits := m.Text(in)
	if want := "echo card ************1111 password=*******"; out != want {
		t.Fatalf("Text(%q) = %q, want %q", in, out, want)
	}
	if len(hits) != 2 || hits[0] != (Hit{Card, 10, 16}) || hits[1].Detector != Password || hits[1].Offset != 36 || hits[1].Length != 7 {
		t.Fatalf("hits %+v", hits)
	}
	// A value at the very end is decided: the text is all there is.
	if out, _ := m.Text("4111111111111111"); out != "************1111" {
		t.Fatalf("a value ending the text: %q", out)
	}
	var none *Masker
	if out, hits := none.Text(in); out != in || hits != nil {
		t.Fatalf("nil masker: %q %v", out, hits)
	}
	if out, hits := m.Text("ls -l /var/log"); out != "ls -l /var/log" || hits != nil {
		t.Fatalf("nothing to mask: %q %v", out, hits)
	}
}

func TestFields(t *testing.T) {
	m, err := Compile(Profile{Detectors: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	a := map[string]string{
		"command": "psql postgres://app:s3cret-pw@db/x -c 'select 1'",
		"reason":  "refund 4111 1111 1111 1111 and 5500-0000-0000-0004",
		"target":  "4111111111111111", // not named: left alone
		"masked":  "argv:card:1",
	}
	sum := m.Fields(a, "command", "reason", "ticket")
	if sum != "command:url-password:1,reason:card:2" {
		t.Fatalf("summary %q", sum)
	}
	if a["masked"] != "argv:card:1,command:url-password:1,reason:card:2" {
		t.Fatalf("masked attribute %q", a["masked"])
	}
	if strings.Contains(a["command"], "s3cret") || strings.Contains(a["reason"], "4111 1111 1111 1111") || a["target"] != "4111111111111111" {
		t.Fatalf("fields %q", a)
	}
	if _, ok := a["ticket"]; ok {
		t.Fatal("a key that was not there was added")
	}
	// Nothing to mask: no "masked" attribute appears.
	b := map[string]string{"reason": "routine maintenance"}
	if m.Fields(b, "reason") != "" || len(b) != 1 {
		t.Fatalf("%q", b)
	}
}
