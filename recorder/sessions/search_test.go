package sessions

import (
	"regexp"
	"strings"
	"testing"
)

func TestCheckRegexpCost(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, pattern string
		want          string // a part of the error; "" for none
	}{
		{"plain", `password`, ""},
		{"classes and alternations", `(?i)(secret|token)[=:]\s*\S+`, ""},
		{"a repeat at the bound", `.{0,100}x`, ""},
		{"a repeat past the bound", `.{0,101}x`, "repeats something 101 times"},
		{"the costly one", `.{0,1000}\x00`, "repeats something 1000 times"},
		{"a large minimum", `a{200,}`, "repeats something 200 times"},
		{"nested repeats", `((a|b){0,30}c){0,30}`, "instructions"},
		{"a long literal", strings.Repeat("ab", MaxRegexpInsts), "instructions"},
		{"not a regular expression", `(unclosed`, "missing closing )"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckRegexpCost(tt.pattern)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("CheckRegexpCost(%q) = %v, want nil", tt.pattern, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("CheckRegexpCost(%q) = %v, want an error with %q", tt.pattern, err, tt.want)
			}
			// What it takes, Go takes: the bound refuses, it does not
			// read patterns differently.
			if _, cerr := regexp.Compile(tt.pattern); err == nil && cerr != nil {
				t.Fatalf("CheckRegexpCost(%q) takes what regexp.Compile refuses: %v", tt.pattern, cerr)
			}
		})
	}
}
