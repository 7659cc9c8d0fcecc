package bastion

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

func witnessVKey(t *testing.T, name string) string {
	t.Helper()
	_, vkey, err := note.GenerateKey(nil, name)
	if err != nil {
		t.Fatal(err)
	}
	cosig, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return cosig
}

// TestWitnessConfig: witness blocks and the witnesses block, their
// defaults, and every mistake with its position.
func TestWitnessConfig(t *testing.T) {
	t.Parallel()
	k1, k2 := witnessVKey(t, "w1.example/a"), witnessVKey(t, "w2.example/b")
	_, logKey, _ := note.GenerateKey(nil, "bastion.example/log")
	block := func(name, url, key string) string {
		return "witness \"" + name + "\" {\n  url = \"" + url + "\"\n  key = \"" + key + "\"\n}\n"
	}
	cfg, err := ParseConfig("b.hcl", []byte(block("one", "https://w1.example/", k1)+block("two", "http://127.0.0.1:7380", k2)))
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Witnesses
	if len(w.List) != 2 || w.Threshold != 2 || w.StaleAfter != DefaultWitnessStaleAfter || w.List[0].Key.VKey != k1 || w.List[1].URL != "http://127.0.0.1:7380" {
		t.Fatalf("witnesses: %+v", w)
	}
	cfg, err = ParseConfig("b.hcl", []byte(block("one", "https://w1.example/", k1)+block("two", "https://w2.example", k2)+"witnesses {\n  threshold = 1\n  stale_after = \"90s\"\n}\n"))
	if err != nil || cfg.Witnesses.Threshold != 1 || cfg.Witnesses.StaleAfter != 90*time.Second {
		t.Fatalf("threshold and stale_after: %+v, %v", cfg, err)
	}
	if cfg, err := ParseConfig("b.hcl", nil); err != nil || len(cfg.Witnesses.List) != 0 {
		t.Fatalf("no witnesses: %+v, %v", cfg, err)
	}
	for _, c := range []struct{ name, src, want string }{
		{"http elsewhere", block("one", "http://w1.example", k1), `^b\.hcl:2:3: witness "one": url = "http://w1.example" is not an https URL`},
		{"no host", block("one", "https:///x", k1), `^b\.hcl:2:3: witness "one": url`},
		{"log key", block("one", "https://w1.example", logKey), `^b\.hcl:3:3: witness "one": .*a log's signing key`},
		{"bad key", block("one", "https://w1.example", "w1+0000+AAAA"), `^b\.hcl:3:3: witness "one": witness key`},
		{"wrong hash", block("one", "https://w1.example", k1[:len("w1.example/a+")]+"00000000"+k1[len("w1.example/a+00000000"):]), `key hash is 00000000`},
		{"same key twice", block("one", "https://w1.example", k1) + block("two", "https://w2.example", k1), `^b\.hcl:7:3: witness "two" has the key of witness "one"`},
		{"twice", block("one", "https://w1.example", k1) + block("one", "https://w2.example", k2), `^b\.hcl:5:1: witness "one" is defined twice`},
		{"bad name", block("One!", "https://w1.example", k1), `^b\.hcl:1:1: witness "One!": a name is lowercase`},
		{"threshold above", block("one", "https://w1.example", k1) + "witnesses {\n  threshold = 2\n}\n", `^b\.hcl:6:3: witnesses threshold = 2: it is at least 1 and at most the 1`},
		{"threshold zero", block("one", "https://w1.example", k1) + "witnesses {\n  threshold = 0\n}\n", `threshold = 0`},
		{"stale", block("one", "https://w1.example", k1) + "witnesses {\n  stale_after = \"soon\"\n}\n", `^b\.hcl:6:3: stale_after = "soon" is not a positive duration`},
		{"no witness", "witnesses {\n  threshold = 1\n}\n", `^b\.hcl:1:1: a witnesses block without witness blocks`},
		{"missing key", "witness \"one\" {\n  url = \"https://w1.example\"\n}\n", `^b\.hcl:1:\d+: (error: )?Missing required argument`},
	} {
		_, err := ParseConfig("b.hcl", []byte(c.src))
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: %v, want a ConfigError", c.name, err)
			continue
		}
		if !regexp.MustCompile(c.want).MatchString(err.Error()) {
			t.Errorf("%s: %q does not match %q", c.name, err, c.want)
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !regexp.MustCompile(`^b\.hcl:\d+:\d+: `).MatchString(line) {
				t.Errorf("%s: line %q has no file:line:col", c.name, line)
			}
		}
	}
}
