package mask

// Numbers: card numbers, SSNs and IBANs all begin (or, for an IBAN, turn
// numeric) at a digit.

// number tries the detectors that start at the digit b[i].
func (s *Stream) number(b []byte, i int, final bool) int {
	m := s.m
	prev := s.prev(b, i)
	if prev >= 0 && alnum[prev] {
		// Only an IBAN turns numeric after letters: "GB82…".
		if m.on[dIBAN] && isUpper(byte(prev)) {
			if p2 := s.prev(b, i-1); p2 >= 0 && isUpper(byte(p2)) && !isWord(s.prev(b, i-2)) {
				return s.iban(b, i, final)
			}
		}
		// Digits after a letter (a hex string, "v2"): none of the run
		// can start a number.
		j := i + 1
		for j < len(b) && isDigit(b[j]) {
			j++
		}
		return j
	}
	// The length of the run of digits says which detector can match: a
	// card number starts with 4 digits or 13 to 19, an SSN with 3 (or 9
	// after a label).
	j, undecided := digitRun(b, i, 19, final)
	if undecided {
		return more
	}
	// Cheap rejections first: most runs of digits in terminal output are
	// sizes, times and dates.
	next := func(k int) int {
		if k < len(b) {
			return int(b[k])
		}
		if final {
			return eof
		}
		return more
	}
	// A run that matches nothing is skipped whole: no digit inside it can
	// start a number.
	r := no
	switch g := j - i; {
	case g >= 13 && g <= 19:
		if m.on[dCard] && b[i] >= '2' && b[i] <= '6' {
			r = s.card(b, i, final)
		}
	case g == 4:
		if !m.on[dCard] || b[i] < '2' || b[i] > '6' {
			break
		}
		// A separator and a group of at least 3 digits must follow
		// (unlike in a date, 2026-11-27).
		c := next(j)
		if c != ' ' && c != '-' {
			if c == more {
				return more
			}
			break
		}
		for k := j + 1; k <= j+3; k++ {
			if d := next(k); d == more {
				return more
			} else if d < 0 || !isDigit(byte(d)) {
				return j
			}
		}
		r = s.card(b, i, final)
	case g == 3 || g == 9:
		if !m.on[dSSN] {
			break
		}
		if c := next(j); c == more || c == '-' || c == ' ' || ssnLabel(b, i) {
			r = s.ssn(b, i, final)
		}
	}
	if r == no {
		return j
	}
	return r
}

// digitRun returns the end of the run of digits at b[i], reading at most
// limit+1 digits, and whether b ended it before it could tell.
func digitRun(b []byte, i, limit int, final bool) (end int, undecided bool) {
	j := i
	for j < len(b) && j-i <= limit && isDigit(b[j]) {
		j++
	}
	return j, j >= len(b) && !final
}

// wordAfter reports whether b[j] continues a word (so a number ending
// before it is not a number of its own). After the end of b it reports
// more unless final.
func wordAfter(b []byte, j int, final bool) int {
	if j >= len(b) {
		if final {
			return no
		}
		return more
	}
	if isWord(int(b[j])) {
		return 1
	}
	return no
}

// card finds a payment card number at b[i]: 13 to 19 digits, either in one
// run or in groups separated by single spaces or single dashes (the same
// throughout) where the first group has 4 digits and each later group 3
// to 6; the digits pass the Luhn check and name a card network (IIN)
// whose numbers have that length. Of the groups that follow, the longest
// run of them that is a card number counts.
func (s *Stream) card(b []byte, i int, final bool) int {
	var digits [19]byte
	j, undecided := digitRun(b, i, 19, final)
	if undecided {
		return more
	}
	g := j - i
	if g > 19 {
		return no
	}
	switch wordAfter(b, j, final) {
	case more:
		return more
	case 1:
		return no
	}
	copy(digits[:], b[i:j])
	if g >= 13 {
		if validCard(digits[:g]) {
			s.maskNumber(Card, b, i, j)
			return j
		}
		return no
	}
	if g != 4 || j >= len(b) {
		return no
	}
	sep := b[j]
	if sep != ' ' && sep != '-' {
		return no
	}
	var ends [6]int // end of the value after each group
	var counts [6]int
	ends[0], counts[0] = j, 4
	groups, total := 1, 4
	for groups < len(ends) {
		if j >= len(b) {
			if !final {
				return more
			}
			break
		}
		if b[j] != sep {
			break
		}
		e, undecided := digitRun(b, j+1, 6, final)
		if undecided {
			return more
		}
		gl := e - (j + 1)
		if gl < 3 || gl > 6 || total+gl > 19 {
			break
		}
		w := wordAfter(b, e, final)
		if w == more {
			return more
		}
		if w == 1 {
			break
		}
		copy(digits[total:], b[j+1:e])
		total += gl
		ends[groups], counts[groups] = e, total
		groups++
		j = e
	}
	for k := groups - 1; k > 0; k-- {
		if counts[k] >= 13 && validCard(digits[:counts[k]]) {
			s.maskNumber(Card, b, i, ends[k])
			return ends[k]
		}
	}
	return no
}

func (s *Stream) maskNumber(det string, b []byte, lo, hi int) {
	s.hit(det, lo, hi)
	s.edit(lo, hi, modeShape, s.m.keep)
}

// validCard reports whether d (ASCII digits) passes the Luhn check and
// its prefix and length fit a card network.
func validCard(d []byte) bool {
	return luhn(d) && iinOK(d)
}

func luhn(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// iinOK checks the issuer identification number (the leading digits)
// against the card networks' published ranges and lengths.
func iinOK(d []byte) bool {
	n := len(d)
	num := func(k int) int {
		v := 0
		for _, c := range d[:k] {
			v = v*10 + int(c-'0')
		}
		return v
	}
	p1, p2, p3, p4 := num(1), num(2), num(3), num(4)
	between := func(v, lo, hi int) bool { return v >= lo && v <= hi }
	switch {
	case p2 == 34 || p2 == 37: // American Express
		return n == 15
	case p1 == 4: // Visa
		return n == 13 || n == 16 || n == 19
	case between(p2, 51, 55) || between(p4, 2221, 2720): // Mastercard
		return n == 16
	case between(p4, 2200, 2204): // Mir
		return between(n, 16, 19)
	case between(p4, 3528, 3589): // JCB
		return between(n, 16, 19)
	case p2 == 36 || p2 == 38 || p2 == 39 || between(p3, 300, 305) || p3 == 309: // Diners Club
		return between(n, 14, 19)
	case p4 == 6011 || p2 == 65 || between(p3, 644, 649): // Discover
		return between(n, 16, 19)
	case p2 == 62: // UnionPay
		return between(n, 16, 19)
	case p2 == 50 || between(p2, 56, 69): // Maestro
		return between(n, 13, 19)
	}
	return false
}

// ssn finds a US social security number at b[i]: AAA-GG-SSSS, or nine
// digits (plain or as AAA GG SSSS) right after an "SSN" label ("SSN:",
// "ssn=", "SSN #"). Numbers no SSA office issues are not SSNs: area 000,
// 666 or 900–999, group 00, serial 0000.
func (s *Stream) ssn(b []byte, i int, final bool) int {
	if p := s.prev(b, i); p == '-' && before(b, i, 2) >= 0 && isDigit(byte(before(b, i, 2))) {
		return no // the tail of a longer dashed number
	}
	var d [9]byte
	// read AAA?GG?SSSS with sep, or nine digits with sep == 0.
	read := func(sep byte) int {
		j, k := i, 0
		for _, g := range [3]int{3, 2, 4} {
			if k > 0 && sep != 0 {
				if j >= len(b) {
					return more
				}
				if b[j] != sep {
					return no
				}
				j++
			}
			for range g {
				if j >= len(b) {
					return more
				}
				if !isDigit(b[j]) {
					return no
				}
				d[k] = b[j]
				j, k = j+1, k+1
			}
		}
		if j >= len(b) {
			if final {
				return j
			}
			return more
		}
		if isWord(int(b[j])) || b[j] == '-' && j+1 < len(b) && isDigit(b[j+1]) {
			return no
		}
		if b[j] == '-' && j+1 >= len(b) && !final {
			return more
		}
		return j
	}
	finish := func(j int) int {
		if j == more && final {
			return no
		}
		if j < 0 {
			return j
		}
		if !validSSN(d) {
			return no
		}
		s.maskNumber(SSN, b, i, j)
		return j
	}
	if r := finish(read('-')); r != no {
		return r
	}
	if !ssnLabel(b, i) {
		return no
	}
	if r := finish(read(0)); r != no {
		return r
	}
	return finish(read(' '))
}

// ssnLabel reports whether an "SSN" label comes right before b[i]: "SSN",
// then up to three of space, tab, ':', '#', '='.
func ssnLabel(b []byte, i int) bool {
	j := i
	for k := 0; k < 3 && j > 0; k++ {
		c := b[j-1]
		if c != ' ' && c != '\t' && c != ':' && c != '#' && c != '=' {
			break
		}
		j--
	}
	if j == i || j < 3 {
		return false
	}
	if lower(b[j-3]) != 's' || lower(b[j-2]) != 's' || lower(b[j-1]) != 'n' {
		return false
	}
	return !isWord(before(b, j-3, 1))
}

func validSSN(d [9]byte) bool {
	area := int(d[0]-'0')*100 + int(d[1]-'0')*10 + int(d[2]-'0')
	group := int(d[3]-'0')*10 + int(d[4]-'0')
	serial := string(d[5:])
	switch {
	case area == 0 || area == 666 || area >= 900, group == 0, serial == "0000":
		return false
	case string(d[:]) == "078051120" || string(d[:]) == "219099999":
		return false // printed on sample cards in the 1930s and 1940s, never issued
	}
	return true
}

// ibanLengths is the length of an IBAN for each country that issues them
// (the SWIFT IBAN registry).
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16,
	"BG": 22, "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22,
	"CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20,
	"EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22,
	"GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
	"IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30,
	"KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
	"LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
	"MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
	"PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
	"SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
	"SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29,
	"VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

// iban finds an IBAN whose check digits start at b[i] (after the two
// letters of its country code): the country's length in upper-case
// letters and digits, either unbroken or in groups of four separated by
// single spaces, passing the ISO 13616 mod-97 check. The country code
// stays visible; the rest is masked like a card number.
func (s *Stream) iban(b []byte, i int, final bool) int {
	start := i - 2
	want, ok := ibanLengths[string(b[start:i])]
	if !ok {
		return no
	}
	var v [34]byte
	v[0], v[1] = b[start], b[start+1]
	k, j := 2, i
	spaced := false
	gap := -1 // the k before which a space was read
	for k < want {
		if j >= len(b) {
			if final {
				return no
			}
			return more
		}
		c := b[j]
		if k == 4 && c == ' ' {
			spaced = true
		}
		if spaced && k%4 == 0 && gap != k {
			if c != ' ' {
				return no
			}
			gap = k
			j++
			continue
		}
		if k < 4 && !isDigit(c) || !isDigit(c) && !isUpper(c) {
			return no
		}
		v[k] = c
		k, j = k+1, j+1
	}
	switch wordAfter(b, j, final) {
	case more:
		return more
	case 1:
		return no
	}
	if !ibanChecksum(v[:want]) {
		return no
	}
	s.hit(IBAN, start, j)
	s.edit(i, j, modeShape, s.m.keep)
	return j
}

// ibanChecksum computes ISO 7064 MOD 97-10 over the IBAN with its first
// four characters moved to the end and letters as 10–35.
func ibanChecksum(v []byte) bool {
	r := 0
	add := func(c byte) {
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A'+10)) % 97
		}
	}
	for _, c := range v[4:] {
		add(c)
	}
	for _, c := range v[:4] {
		add(c)
	}
	return r == 1
}
