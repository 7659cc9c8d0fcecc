package mask

import "unicode/utf8"

// customAt tries the custom rules whose matches can start with b[i], in
// the profile's order, and masks the first match.
//
// A rule sees a window of at most HoldBack bytes of text from b[i], cut
// short at the next ESC in the text (the edge of an OSC string, so that a
// match never reaches across one) and,
// where HoldBack cuts it, at the start of a UTF-8 sequence that would not
// fit (so a match never ends inside a character).
func (s *Stream) customAt(b []byte, i int, final bool) int {
	end := min(len(b), i+HoldBack)
	cut := end == i+HoldBack
	for j := i; j < end; j++ {
		if b[j] == 0x1b {
			end, cut = j, false
			break
		}
	}
	if !cut && end == len(b) && !final {
		return more
	}
	if cut {
		// Back off over a UTF-8 sequence that HoldBack cut.
		for k := end - 1; k >= i && k >= end-utf8.UTFMax; k-- {
			if !utf8.RuneStart(b[k]) {
				continue
			}
			if !utf8.FullRune(b[k:end]) {
				end = k
			}
			break
		}
	}
	win := b[i:end]
	for _, r := range s.m.custom {
		if !r.first[b[i]] {
			continue
		}
		loc := r.re.FindIndex(win)
		if loc == nil || loc[1] == 0 {
			continue
		}
		s.hit(r.name, i, i+loc[1])
		s.edit(i, i+loc[1], modeShape, r.keep)
		return i + loc[1]
	}
	return no
}
