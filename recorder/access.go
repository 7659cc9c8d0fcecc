package recorder

import "github.com/bastionhq/bastion/recorder/events"

// EventJournalAccessed is the event leaf that records a read of the
// journal by a person or a tool ([events.JournalAccessed]). See
// docs/journal-format.md, section 6.2.
const EventJournalAccessed = events.JournalAccessed

// EventEvidenceGenerated is the event leaf that records an examiner's
// report once its files are written: the period, the filters, the SHA-256
// of each file, and who made it (as [EventJournalAccessed]). A signed note
// over the leaf's index and the digests ([EvidenceNote]) is kept beside
// the report.
const EventEvidenceGenerated = events.EvidenceGenerated
