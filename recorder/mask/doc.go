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
// bytes from where an undecided value starts, fewer than [HoldBack] (80),
// and decides them when more output arrives, or at Flush or Close. Every
// detector decides within that many bytes of where it starts. Fed the same
// bytes, a Stream gives the same output and hits however they are split,
// as long as Flush is not called in between: Flush decides at once, as if
// the stream ended, so a value split by an idle pause of more than the
// idle delay may be missed.
//
// # Long values
//
// Some values can be longer than the hold-back: JWTs, tokens, password
// values, and PEM private keys, which run to kilobytes. Their detector
// decides on a bounded prefix (the BEGIN line, a token's prefix and
// minimum length, a JWT's header) and from then on every byte that can
// continue the value is masked as it streams, without being held back,
// until one cannot (or, for a PEM block, until its "-----END " line). So a
// Stream holds back at most HoldBack bytes even inside a 16 KiB key. Caps
// bound how much a value may mask: 255 bytes for a token, 1 KiB for a
// password, 16 KiB for a JWT, 64 KiB for a PEM block; the bytes after a
// cap are not masked. Such a value stays open across Flush (a key printed
// slowly is still masked), and its hit is reported when it ends.
//
// # Terminal escape sequences
//
// CSI and other escape sequences, and OSC, DCS, SOS, PM and APC strings
// (up to 4 KiB), pass through untouched and are never part of a matched
// value: masking never cuts into one or emits part of one. A value that
// starts right after a sequence ("\x1b[31m4111…") is found. A value
// interrupted by a sequence (a card number with a color change between
// its digits) is not found, except for the long values above, whose
// masking skips sequences inside them. Strings inside OSC sequences
// (window titles, hyperlinks) are not searched. C1 controls as single
// bytes (0x9b) are not recognised: in UTF-8 they are parts of characters.
//
// # Custom rules
//
// A [CustomRule] is a regular expression tried, at each byte that can
// begin one of its matches, against a window of at most HoldBack bytes;
// see its documentation for the limits that follow. Custom rules run the
// regexp engine, so a rule whose first byte is common (a digit) costs
// throughput.
//
// # Hits
//
// Each masked value is reported as a [Hit]: the detector, the offset of
// the value in the stream and its length, never the value. A caller
// records them in the journal as masking frames (kind 9), after the
// output frame that holds the masked bytes.
package mask
