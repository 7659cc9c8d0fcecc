package evidence_test

import (
	"testing"

	"github.com/bastionhq/bastion/recorder/evidence"
)

// TestControls checks that the appendix names only sections the report
// has, and answers every control the report is for.
func TestControls(t *testing.T) {
	ids := map[string]bool{}
	for _, s := range evidence.Sections {
		ids[s.ID] = true
	}
	want := map[string]bool{"AC-2": true, "AC-6(9)": true, "AU-2": true, "AU-3": true, "AU-6": true, "AU-9(3)": true, "AU-10": true,
		"8.2.2": true, "10.2": true, "10.3": true, "II.C.7(b)": true, "AC-5": true, "AC-6": true, "8.2.1": true, "10.2.1.3": true, "10.5.1": true}
	for _, c := range evidence.Controls() {
		delete(want, c.ID)
		if c.Answer == "" || len(c.Sections) == 0 {
			t.Errorf("control %s has no answer or section", c.ID)
		}
		for _, s := range c.Sections {
			if !ids[s] {
				t.Errorf("control %s names section %q, which the report does not have", c.ID, s)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("controls not answered: %v", want)
	}
}
