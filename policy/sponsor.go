package policy

import "strings"

// SponsorMatches reports whether sponsor, the free string a token or a
// role names as the party an agent acts for, names identity id: it is
// id's SUBJECT@PROVIDER or id's subject (exactly, case and all), or id's
// e-mail address (in any case). An empty sponsor names nobody.
func SponsorMatches(sponsor string, id *Identity) bool {
	if sponsor == "" || id == nil {
		return false
	}
	if id.Subject != "" && (sponsor == id.Subject || id.Provider != "" && sponsor == id.Subject+"@"+id.Provider) {
		return true
	}
	return id.Email != "" && strings.EqualFold(sponsor, id.Email)
}
