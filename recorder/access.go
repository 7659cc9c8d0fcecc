package recorder

// EventJournalAccessed is the event leaf that records a read of the
// journal by a person or a tool: a session played or exported, a report
// made. Its attributes: action ("play", "export"…), session (when one
// session was read), format (for exports), user and uid (the OS account
// that read it), host, pid. See docs/journal-format.md, section 6.2.
const EventJournalAccessed = "journal.accessed"
