package policy

import (
	"slices"
	"testing"

	"github.com/bastionhq/bastion/policy/mask"
)

func TestStaff(t *testing.T) {
	src := `identity "ops" {
  providers = ["corp"]
  subjects  = ["alice", "bob"]
}
identity "audit" {
  providers = ["corp"]
  claims    = { groups = ["audit"] }
}
operators = ["ops"]
auditors  = ["audit", "ops"]
role "r" {
  identities = ["ops"]
  logins = ["a"]
}
`
	p, warnings, err := decodeString(src, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warnings {
		if w.Severity == SeverityWarning && slices.Contains([]string{`identity "audit" is not used by any role or approval`}, w.Message) {
			t.Errorf("an identity named only by auditors is said to be unused: %v", w)
		}
	}
	alice := &Identity{Provider: "corp", Subject: "alice"}
	carol := &Identity{Provider: "corp", Subject: "carol", Claims: map[string]any{"groups": []any{"audit"}}}
	other := &Identity{Provider: "other", Subject: "alice"}
	for _, c := range []struct {
		id                *Identity
		operator, auditor bool
	}{
		{alice, true, true},
		{carol, false, true},
		{other, false, false},
		{nil, false, false},
	} {
		if got := p.Operator(c.id); got != c.operator {
			t.Errorf("Operator(%v) = %v, want %v", c.id, got, c.operator)
		}
		if got := p.Auditor(c.id); got != c.auditor {
			t.Errorf("Auditor(%v) = %v, want %v", c.id, got, c.auditor)
		}
	}
	if !slices.Equal(p.Operators, []string{"ops"}) || !slices.Equal(p.Auditors, []string{"audit", "ops"}) {
		t.Errorf("Operators %v, Auditors %v", p.Operators, p.Auditors)
	}
	ops := p.OperatorMatchers()
	if len(ops) != 1 || ops[0].Name != "ops" || !slices.Equal(ops[0].Match.Subjects, []string{"alice", "bob"}) {
		t.Errorf("OperatorMatchers() = %+v", ops)
	}
	ops[0].Match.Subjects[0] = "mallory"
	if p.Operator(&Identity{Provider: "corp", Subject: "mallory"}) {
		t.Error("changing what OperatorMatchers returned changed the policy")
	}
	if aud := p.AuditorMatchers(); len(aud) != 2 || aud[0].Name != "audit" || aud[1].Name != "ops" {
		t.Errorf("AuditorMatchers() = %+v", aud)
	}
	// For the journal: the matchers as JSON, masked.
	m, err := mask.Compile(mask.Profile{Custom: []mask.CustomRule{{Name: "bob", Pattern: "bob"}}})
	if err != nil {
		t.Fatal(err)
	}
	opsJSON, audJSON, opsHits, audHits := p.StaffJSON(m)
	if want := `[{"name":"ops","providers":["corp"],"subjects":["alice","***"],"sponsors":[],"claims":{}}]`; string(opsJSON) != want || len(opsHits) != 1 {
		t.Errorf("operators.json = %s (%d hits), want %s", opsJSON, len(opsHits), want)
	}
	if want := `[{"name":"audit","providers":["corp"],"subjects":[],"sponsors":[],"claims":{"groups":["audit"]}},{"name":"ops","providers":["corp"],"subjects":["alice","***"],"sponsors":[],"claims":{}}]`; string(audJSON) != want || len(audHits) != 1 {
		t.Errorf("auditors.json = %s (%d hits), want %s", audJSON, len(audHits), want)
	}
	// A policy written from values says them too, and reads back.
	again, _, err := decodeString(p.Text(), testOptions)
	if err != nil || !slices.Equal(again.Operators, p.Operators) || !slices.Equal(again.Auditors, p.Auditors) {
		t.Fatalf("the policy's text reads back as %+v (%v):\n%s", again, err, p.Text())
	}

	// A role added later (serve --dev) keeps them.
	q, err := p.WithRoles(DevRole([]string{"x"}))
	if err != nil {
		t.Fatal(err)
	}
	if !q.Operator(alice) || !q.Auditor(carol) {
		t.Error("WithRoles dropped the operators or auditors")
	}

	// Without the attributes, nobody is either, and the matchers are nil.
	none, _, err := decodeString(okIdentity+`role "r" {
  identities = ["ops"]
  logins = ["a"]
}`, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if none.Operator(alice) || none.Auditor(alice) || none.OperatorMatchers() != nil || none.AuditorMatchers() != nil || none.Operators != nil {
		t.Error("a policy without operators or auditors has some")
	}
	if o, a, _, _ := none.StaffJSON(nil); o != nil || a != nil {
		t.Errorf("StaffJSON of a policy without operators or auditors: %s %s", o, a)
	}
}
