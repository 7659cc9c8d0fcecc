package mask

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// terminalOutput returns about size bytes of ordinary terminal output,
// the same every time: directory listings, logs, build and test output,
// process tables, colored prompts and prose. It holds digits, dashes,
// colons, and the letters that start detectors' prefixes, as real output
// does, but no value any detector masks.
func terminalOutput(size int) []byte {
	rng := rand.New(rand.NewPCG(42, 7))
	words := strings.Fields(`the of and to in is it that for on with as was
		at by be this are from or have an not but had his they which one
		were all we when there can been has more if will so no would each
		about how up out them then she many some these two her its see
		could time into only other new like than first may now people
		session journal commit output passed failed server request user`)
	users := []string{"alice", "bob", "root", "postgres", "deploy", "www-data"}
	months := []string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
	levels := []string{"INFO", "WARN", "DEBUG", "ERROR"}
	var b strings.Builder
	for b.Len() < size {
		switch rng.IntN(8) {
		case 0: // ls -l
			fmt.Fprintf(&b, "-rw-r--r--  1 %s staff %8d %s %2d %02d:%02d %s.go\r\n",
				users[rng.IntN(len(users))], rng.IntN(1<<20), months[rng.IntN(12)], 1+rng.IntN(28),
				rng.IntN(24), rng.IntN(60), words[rng.IntN(len(words))])
		case 1: // a structured log line
			fmt.Fprintf(&b, "2026-11-%02dT%02d:%02d:%02d.%03dZ %s request id=%08x-%04x-%04x status=%d bytes=%d dur=%d.%dms path=/api/v1/%s\n",
				1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1000), levels[rng.IntN(4)],
				rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<16), 200+rng.IntN(300), rng.IntN(100000),
				rng.IntN(100), rng.IntN(10), words[rng.IntN(len(words))])
		case 2: // access log
			fmt.Fprintf(&b, "10.%d.%d.%d - - [27/Nov/2026:09:%02d:%02d +0000] \"GET /%s HTTP/1.1\" %d %d \"-\" \"curl/8.5.0\"\n",
				rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(60), rng.IntN(60),
				words[rng.IntN(len(words))], 200+rng.IntN(300), rng.IntN(10000))
		case 3: // go test output
			fmt.Fprintf(&b, "ok  \tgithub.com/example/%s/%s\t%d.%03ds\n--- PASS: Test%s (%d.%02ds)\n",
				words[rng.IntN(len(words))], words[rng.IntN(len(words))], rng.IntN(10), rng.IntN(1000),
				strings.ToUpper(words[rng.IntN(len(words))][:1]), rng.IntN(5), rng.IntN(100))
		case 4: // colored prompt and ls
			fmt.Fprintf(&b, "\x1b[01;32m%s@host\x1b[00m:\x1b[01;34m~/src\x1b[00m$ ls\r\n\x1b[01;34mbin\x1b[0m  \x1b[01;32m%s\x1b[0m  README.md\r\n",
				users[rng.IntN(len(users))], words[rng.IntN(len(words))])
		case 5: // ps
			fmt.Fprintf(&b, "%5d %-8s %2d:%02d /usr/bin/%s --%s=%d\n",
				rng.IntN(99999), users[rng.IntN(len(users))], rng.IntN(60), rng.IntN(60),
				words[rng.IntN(len(words))], words[rng.IntN(len(words))], rng.IntN(1000))
		default: // prose
			for range 12 + rng.IntN(10) {
				b.WriteString(words[rng.IntN(len(words))])
				b.WriteByte(' ')
			}
			b.WriteString("\n")
		}
	}
	return []byte(b.String()[:size])
}

// proseOutput is about size bytes of prose: the words of terminalOutput
// in lines, with no digits and no escape sequences.
func proseOutput(size int) []byte {
	rng := rand.New(rand.NewPCG(5, 5))
	words := strings.Fields(`the of and to in is it that for on with as was
		at by be this are from or have an not but had his they which one
		were all we when there can been has more if will so no would each
		about how up out them then she many some these two her its see
		could time into only other new like than first may now people
		session journal commit output passed failed server request user`)
	var b strings.Builder
	for b.Len() < size {
		for range 12 + rng.IntN(10) {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteByte(' ')
		}
		b.WriteString("\n")
	}
	return []byte(b.String()[:size])
}

// denseOutput is output full of candidates: numbers that look like cards,
// SSNs and IBANs, key and token prefixes, assignments, URLs; about one in
// four of them is a value that is masked.
func denseOutput(size int) []byte {
	rng := rand.New(rand.NewPCG(9, 9))
	items := []string{
		"4111 1111 1111 1111", "4111 1111 1111 1112", "5555555555554444", "1234567812345678",
		"123-45-6789", "555-123-4567", "GB82 WEST 1234 5698 7654 32", "GB83WEST12345698765432",
		"AKIAIOSFODNN7EXAMPLE", "AKIA is a prefix", "ghp_C3J27XDCG2LmlZGEONYlgCtjfIZ4SOcMz9CP", "ghp_short",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.sig",
		"password=hunter2", "the password is long", "postgres://u:p@db/x", "https://example.com:8080/",
		"-----BEGIN PUBLIC KEY-----", "xoxb-not-a-token", "secret access key", "2026-11-27 12:34:56",
	}
	var b strings.Builder
	for b.Len() < size {
		b.WriteString(items[rng.IntN(len(items))])
		b.WriteString([]string{" ", ", ", "\n", " | "}[rng.IntN(4)])
	}
	return []byte(b.String()[:size])
}

// coloredOutput is about size bytes of output with a color change every
// few bytes, inside numbers, words and values: grep --color matches, a
// colored diff, ls --color with colored sizes and dates, a table whose
// digits change color, and text colored character by character. About one
// line in sixteen holds a card number or a password with color changes
// inside it, which is masked.
func coloredOutput(size int) []byte {
	rng := rand.New(rand.NewPCG(3, 11))
	words := strings.Fields(`session journal commit output passed failed
		server request user config deploy token value listen timeout`)
	rainbow := []string{"\x1b[31m", "\x1b[33m", "\x1b[32m", "\x1b[36m", "\x1b[34m", "\x1b[35m"}
	var b strings.Builder
	for b.Len() < size {
		switch rng.IntN(16) {
		case 0:
			fmt.Fprintf(&b, "card 4111 \x1b[1m1111\x1b[22m 1111 %s1111\x1b[0m\r\n", rainbow[rng.IntN(6)])
		case 1:
			fmt.Fprintf(&b, "\x1b[35mconfig.yaml\x1b[m\x1b[36m:\x1b[m\x1b[32m%d\x1b[m\x1b[36m:\x1b[m  password: \x1b[01;31m\x1b[Khun%dter\x1b[m\x1b[K\n",
				rng.IntN(500), rng.IntN(100))
		case 2, 3, 4:
			fmt.Fprintf(&b, "\x1b[35msrc/%s.go\x1b[m\x1b[36m:\x1b[m\x1b[32m%d\x1b[m\x1b[36m:\x1b[m\tif \x1b[01;31m\x1b[K%s\x1b[m\x1b[K.%s() != nil {\n",
				words[rng.IntN(len(words))], rng.IntN(2000), words[rng.IntN(len(words))], words[rng.IntN(len(words))])
		case 5, 6, 7:
			fmt.Fprintf(&b, "\x1b[32m+\t%s := %d\x1b[m\n\x1b[31m-\t%s := %d\x1b[m\n",
				words[rng.IntN(len(words))], rng.IntN(1<<20), words[rng.IntN(len(words))], rng.IntN(1<<20))
		case 8, 9, 10:
			fmt.Fprintf(&b, "-rw-r--r--  1 alice staff \x1b[32m%d\x1b[0m \x1b[34mNov %2d %02d:%02d\x1b[0m \x1b[01;34m%s\x1b[0m\r\n",
				rng.IntN(1<<20), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), words[rng.IntN(len(words))])
		case 11, 12:
			for range 6 {
				fmt.Fprintf(&b, "\x1b[1m%d\x1b[0m%d ", rng.IntN(100), rng.IntN(1000))
			}
			b.WriteString("\r\n")
		default:
			for _, c := range words[rng.IntN(len(words))] + " " + words[rng.IntN(len(words))] {
				b.WriteString(rainbow[rng.IntN(6)])
				b.WriteRune(c)
			}
			b.WriteString("\x1b[0m\n")
		}
	}
	return []byte(b.String()[:size])
}

func benchMask(b *testing.B, data []byte, chunk int) {
	m := allMasker(b)
	s := m.NewStream()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		for p := data; len(p) > 0; {
			n := min(chunk, len(p))
			s.Write(p[:n])
			p = p[n:]
		}
		s.Flush()
	}
}

// BenchmarkMaskTerminal is the throughput with every built-in detector on
// ordinary terminal output, in 32 KiB reads (the size bastion reads).
func BenchmarkMaskTerminal(b *testing.B) {
	benchMask(b, terminalOutput(4<<20), 32<<10)
}

// BenchmarkMaskColored is the throughput with every built-in detector on
// output full of color changes, some of them inside values.
func BenchmarkMaskColored(b *testing.B) {
	benchMask(b, coloredOutput(4<<20), 32<<10)
}

// BenchmarkMaskProse is the throughput with every built-in detector on
// prose, with no digits and no escape sequences.
func BenchmarkMaskProse(b *testing.B) {
	benchMask(b, proseOutput(4<<20), 32<<10)
}

// BenchmarkMaskDense is the throughput on output full of candidates.
func BenchmarkMaskDense(b *testing.B) {
	benchMask(b, denseOutput(4<<20), 32<<10)
}

// BenchmarkMaskInteractive is the time one small chunk of interactive
// output (an echoed keystroke, a short line) takes through Write and the
// idle Flush, which is the latency masking adds to it.
func BenchmarkMaskInteractive(b *testing.B) {
	data := terminalOutput(1 << 16)
	m := allMasker(b)
	for _, size := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("chunk=%d", size), func(b *testing.B) {
			s := m.NewStream()
			off := 0
			b.SetBytes(int64(size))
			for b.Loop() {
				if off+size > len(data) {
					off = 0
				}
				s.Write(data[off : off+size])
				s.Flush()
				off += size
			}
		})
	}
}
