// Package mask masks sensitive values (card numbers, keys, tokens,
// passwords) in a stream of terminal output as it passes, before the
// journal records it and the client sees it.
//
// A [Profile] names what to mask; [Compile] turns it into a [Masker], and
// each stream of output (a PTY, stdout, stderr) gets its own [Stream]:
//
//	m, err := mask.Compile(mask.Profile{Detectors: []string{"pci", "secrets"}})
//	s := m.NewStream()
//	out, hits := s.Write(chunk) // release out now; record hits
//	…
//	out, hits = s.Flush()       // after ~10 ms without output
//	out, hits = s.Close()       // at the end of the stream
//
// # Profiles
//
// The built-in profiles are "pci" (card), "pii" (ssn, iban), "secrets"
// (aws-key-id, aws-secret, github-token, gitlab-token, slack-token, jwt,
// pem-private-key, password, url-password) and "all". A profile may list
// detectors and built-in profiles together, and add [CustomRule]s.
//
// # Detectors
//
//   - card: 13 to 19 digits, unbroken or in groups split by single spaces or
//     dashes (first group of 4, later groups of 3 to 6), Luhn-valid, with a
//     card network's prefix and length (Visa, Mastercard, Amex, Discover,
//     JCB, Diners, UnionPay, Maestro, Mir). The last [Profile.Keep] digits
//     stay: 4111 1111 1111 1111 becomes **** **** **** 1111.
//   - ssn: AAA-GG-SSSS, or nine digits after an "SSN" label, except numbers
//     never issued (area 000, 666, 9xx; group 00; serial 0000). Phone
//     numbers (3-3-4) do not match.
//   - iban: a country code, check digits and the country's length of
//     upper-case letters and digits, unbroken or in groups of 4, passing
//     the mod-97 check. The country code and the last Keep characters stay.
//   - aws-key-id: AKIA or ASIA and 16 upper-case letters or digits.
//   - aws-secret: 40 base64 characters named aws_secret_access_key (or
//     SecretAccessKey, secret-access-key), or right after a key ID. Strings
//     of hexadecimal digits only are not secrets (they are hashes).
//   - github-token, gitlab-token, slack-token: ghp_ gho_ ghu_ ghs_ ghr_
//     github_pat_, glpat-, xoxa- xoxb- xoxp- xoxr- xoxs-, with a minimum
//     length. The prefix stays visible.
//   - jwt: base64url parts whose header decodes to JSON with "alg", and
//     whose payload starts like a JSON object.
//   - pem-private-key: everything between a "-----BEGIN … PRIVATE KEY-----"
//     line and its END line.
//   - password: the value in password=…, PGPASSWORD=…, "password": "…",
//     passwd: …, --password …, and the like.
//   - url-password: the password in scheme://user:password@host.
//
// Except where a detector keeps digits or a prefix, a masked value becomes
// '*'s, byte for byte: masking never changes the length of the output, so
// offsets in the input are offsets in the output, and a client's terminal
// layout survives.
//
// # Hold-back
//
// A value may arrive split across reads. A Stream therefore keeps back the
// bytes from where an undecided value starts, and decides them when more
// output arrives, or at Flush or Close. Every detector decides within
// [HoldBack] (80) bytes of text of where it starts, so what a Stream holds
// is fewer than HoldBack bytes of text, the escape sequences among them,
// and an escape sequence that has not ended yet (CSI sequences are cut at
// 64 bytes): fewer than [MaxHeld] (2192) bytes in all, however many
// escape sequences come. The escape sequences held are at most 2048
// bytes: when the escape sequences among the last HoldBack bytes of text
// add up to more, the text before the one that tips them over is decided
// there and then, as at a Flush (a long value being masked stays open),
// and counting starts again. That point depends on the bytes alone, not
// on how they are split, so the property below holds. Ordinary
// colored output comes nowhere near that (a 24-bit color change before
// every character is 19 bytes a character); a flood of sequences inside a
// value may split it there. Without escape sequences a Stream holds fewer
// than HoldBack bytes, as before.
//
// Fed the same bytes, a Stream gives the same output and hits however they
// are split, as long as Flush is not called in between: Flush decides at
// once, as if the stream ended, so a value split by an idle pause of more
// than the idle delay may be missed.
//
// # Long values
//
// Some values can be longer than the hold-back: JWTs, tokens, password
// values, and PEM private keys, which run to kilobytes. Their detector
// decides on a bounded prefix (the BEGIN line, a token's prefix and
// minimum length, a JWT's header) and from then on every byte that can
// continue the value is masked as it streams, without being held back,
// until one cannot (or, for a PEM block, until its "-----END " line). So a
// Stream holds back no more even inside a 16 KiB key. Caps bound how much
// a value may mask, in bytes of text (escape sequences inside do not
// count): 255 bytes for a token, 1 KiB for a password, 16 KiB for a JWT,
// 64 KiB for a PEM block; the bytes after a cap are not masked. Such a
// value stays open across Flush (a key printed slowly is still masked),
// and its hit is reported when it ends.
//
// # Terminal escape sequences
//
// The detectors read the output's text: its bytes with escape sequences
// taken out. So a value interrupted by CSI sequences (color changes such
// as "\x1b[31m" and "\x1b[0m", "\x1b[K", arrow keys "\x1b[A") or short
// ones ("\x1b(B", "\x1b7", and SS3 with its character, "\x1bOA"),
// anywhere inside it, between two digits of a card
// number, between "password=" and the password, inside a token, is found
// as the terminal shows it. The sequences pass through untouched: only the
// value's own characters are masked, by the same rules as without them,
// and masking never cuts into a sequence or emits part of one. Nor is a
// sequence a boundary: "ID\x1b[1m4111…" reads as "ID4111…", one word, as
// the terminal shows it, and is not a card number, while "ID:\x1b[1m4111…"
// holds one. An ESC that starts no sequence is read as text that no value
// holds.
//
// The bodies of OSC, DCS, SOS, PM and APC strings (window titles, OSC 8
// hyperlinks, clipboard and notification strings) are text as well: a card
// number in a title or a password in a hyperlink's URL is masked in
// place, the string's opener and terminator untouched. The edges of a
// string are edges of values: no value reaches from inside a string to
// outside it or across it, and the text before an edge is decided as if
// the stream ended there. A string is taken to end after 4 KiB of body
// (so that a stray "ESC ]" cannot swallow what follows); the rest of a
// longer string is read as ordinary text, and a value across that point is
// read as two.
//
// What is not found: a value drawn out of order by cursor movements (a
// program that positions the cursor and writes the digits of a number in
// another order, or overwrites some of them), since the text is the order
// of the bytes, not the screen; a value across the edge of a string, or
// across the point where more than 2048 bytes of escape sequences among
// 80 bytes of text made the stream decide early (see Hold-back); and
// sequences introduced by C1 controls as single bytes (0x9b for CSI, 0x9d
// for OSC), which are not recognised: in UTF-8 they are parts of
// characters, and they are read as text.
//
// # Custom rules
//
// A [CustomRule] is a regular expression tried, at each byte of text that
// can begin one of its matches, against a window of at most HoldBack bytes
// of text (escape sequences inside are taken out, and the window ends at
// the edge of an OSC string); see its documentation for the limits that
// follow. Custom rules run the regexp engine, so a rule whose first byte
// is common (a digit) costs throughput.
//
// # Hits
//
// Each masked value is reported as a [Hit]: the detector, the offset of
// the value in the stream and its length, never the value. The offset is
// the stream offset of the value's first byte; the length is the span of
// the stream from its first byte to its last, so it includes the escape
// sequences inside the value, and none before or after it. A caller
// records them in the journal as masking frames (kind 9), as offset+length
// pairs, after the output frame that holds the masked bytes.
package mask
