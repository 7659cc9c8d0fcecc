package recorder

// EventJournalAccessed is the event leaf that records a read of the
// journal by a person or a tool: a session played or exported, a report
// made, a journal verified. Its attributes: action ("play", "export"…),
// session (when one session was read), format (for exports), who read it
// (user and uid, the OS account; host; pid; via, "serve" when the running
// server recorded it for the reader, "reader" when the reader wrote it
// itself; the identity a token proved, when one did). See
// docs/journal-format.md, section 6.2.
const EventJournalAccessed = "journal.accessed"

// EventEvidenceGenerated is the event leaf that records an examiner's
// report once its files are written: the period, the filters, the SHA-256
// of each file, and who made it (as [EventJournalAccessed]). A signed note
// over the leaf's index and the digests ([EvidenceNote]) is kept beside
// the report.
const EventEvidenceGenerated = "evidence.generated"
