package evidence

import "os"

// SignatureFile is the signed note beside a report over its files'
// digests ([recorder.EvidenceNote]): the journal's writer signs it when
// it records the report's evidence.generated leaf.
const SignatureFile = "evidence.sig"

// The report's files the note covers.
const (
	HTMLFile = "evidence.html"
	JSONFile = "evidence.json"
)

// DigestFile is the lower-case hex SHA-256 of dir's file name.
func DigestFile(dir, name string) (string, error) {
	return Digest(os.DirFS(dir), name)
}
