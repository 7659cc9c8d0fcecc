package webhook

import "testing"

func TestCheckURL(t *testing.T) {
	for u, ok := range map[string]bool{
		"https://hooks.slack.com/services/T0/B0/x": true,
		"http://127.0.0.1:8080/hook":               true,
		"http://[::1]/hook":                        true,
		"http://localhost/hook":                    true,
		"http://hooks.example/hook":                false,
		"ftp://hooks.example/":                     false,
		"https://user:pw@hooks.example/":           false,
		"/relative":                                false,
	} {
		if _, err := checkURL(u); (err == nil) != ok {
			t.Errorf("%s: %v", u, err)
		}
	}
}
