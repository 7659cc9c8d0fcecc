package sessions

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/playback"
)

func TestShortCommand(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, in, want string }{
		{"short", "uname -s", "uname -s"},
		{"empty", "", ""},
		{"a script", "echo one\necho two\n", "echo one…"},
		{"leading blank lines", "\n\n  ls -l\n", "ls -l"},
		{"CRLF", "echo one\r\necho two", "echo one…"},
		{"long line", strings.Repeat("x", 70), strings.Repeat("x", 19) + "…"},
		{"exactly the width", strings.Repeat("y", 20), strings.Repeat("y", 20)},
		{"cut at a space", strings.Repeat("z", 18) + "  tail and more", strings.Repeat("z", 18) + "…"},
		{"runes, not bytes", strings.Repeat("é", 25), strings.Repeat("é", 19) + "…"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ShortCommand(tt.in, 20); got != tt.want {
				t.Errorf("ShortCommand(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		t, err := ParseTime(s)
		if err != nil {
			panic(err)
		}
		return t
	}
	ended := at("2026-11-27T12:00:00Z")
	s := Session{Identity: "bob@dev", Target: "box", Login: "root", State: StateEnded, Started: at("2026-11-27T10:00:00Z"), Ended: &ended}
	live := Session{Identity: "bob@dev", Target: "box", Login: "root", State: StateLive, Started: at("2026-11-27T10:00:00Z")}
	for _, tt := range []struct {
		name       string
		f          Filter
		want, live bool
	}{
		{"none", Filter{}, true, true},
		{"identity", Filter{Identity: "bob@dev"}, true, true},
		{"another identity", Filter{Identity: "bob"}, false, false},
		{"target and login", Filter{Target: "box", Login: "root"}, true, true},
		{"another login", Filter{Login: "deploy"}, false, false},
		{"state", Filter{State: StateLive}, false, true},
		{"since, before its end", Filter{Since: at("2026-11-27T11:00:00Z")}, true, true},
		{"since, after its end", Filter{Since: at("2026-11-27T13:00:00Z")}, false, true},
		{"until, after its start", Filter{Until: at("2026-11-27T10:00:00Z")}, true, true},
		{"until, before its start", Filter{Until: at("2026-11-26")}, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Match(&s); got != tt.want {
				t.Errorf("ended session: %v, want %v", got, tt.want)
			}
			if got := tt.f.Match(&live); got != tt.live {
				t.Errorf("live session: %v, want %v", got, tt.live)
			}
		})
	}
	if err := (&Filter{State: "sleeping"}).Check(); err == nil {
		t.Error("state sleeping: no error")
	}
	a := (&Filter{Identity: "bob@dev", Login: "root", Since: at("2026-11-27")}).AccessAttrs()
	if len(a) != 2 || a["identities"] != "bob@dev" || a["period.from"] != "2026-11-27T00:00:00Z" {
		t.Errorf("AccessAttrs: %v", a)
	}
	if _, err := ParseTime("yesterday"); err == nil {
		t.Error(`ParseTime("yesterday"): no error`)
	}
}

func TestParseRef(t *testing.T) {
	t.Parallel()
	id := "0190b3c4-1f2e-7a6b-8c9d-0e1f2a3b4c5d"
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{id, id, true},
		{strings.ToUpper(id), id, true},
		{"0190b3c4", "0190b3c4", true},
		{"0190B3", "0190b3", true},
		{"019", "", false},
		{"zzzz", "", false},
		{"0190b3c4/../x", "", false},
	} {
		r, err := ParseRef(tt.in)
		if (err == nil) != tt.ok || tt.ok && r.String() != tt.want {
			t.Errorf("ParseRef(%q) = %v, %v; want %q", tt.in, r, err, tt.want)
		}
	}
}

func TestMatcherAround(t *testing.T) {
	t.Parallel()
	plain, err := NewMatcher("a.b", false)
	if err != nil {
		t.Fatal(err)
	}
	if plain("xaxb") != nil || plain("xa.b")[0] != 1 {
		t.Error("plain text is matched as a regular expression")
	}
	re, err := NewMatcher(`(?i)rm\s+-rf`, true)
	if err != nil || re("sudo RM  -rf /") == nil {
		t.Errorf("regular expression: %v", err)
	}
	for _, bad := range []struct {
		p  string
		re bool
	}{{"", false}, {"(", true}} {
		if _, err := NewMatcher(bad.p, bad.re); err == nil {
			t.Errorf("NewMatcher(%q, %v): no error", bad.p, bad.re)
		}
	}
	long := strings.Repeat("é", 200) + "needle" + strings.Repeat("x", 200)
	needle, _ := NewMatcher("needle", false)
	got := Around(long, needle(long))
	if !strings.Contains(got, "needle") || !strings.HasPrefix(got, "…") || !strings.HasSuffix(got, "…") || !utf8.ValidString(got) || len(got) > MaxContext+2*len("…")+utf8.UTFMax {
		t.Errorf("Around: %q", got)
	}
}

// The rule and the grant come from the start leaf's attributes as the
// front door writes them (policy.rule, policy.grant).
func TestDetailsRuleAndGrant(t *testing.T) {
	rec := &recorder.SessionRecord{Start: recorder.ProvenLeaf{Leaf: &recorder.Leaf{Attrs: recorder.Attrs{
		"policy.rule": "role:db", "policy.grant": "G-1", "route": "user", "client": "127.0.0.1:1",
	}}}}
	d := NewDetails(Session{ID: "x", State: "ended"}, rec, &playback.Summary{})
	if d.Rule != "role:db" || d.Grant != "G-1" || d.Route != "user" || d.Client != "127.0.0.1:1" {
		t.Errorf("details: rule %q grant %q route %q client %q", d.Rule, d.Grant, d.Route, d.Client)
	}
}
