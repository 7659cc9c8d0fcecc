package storage

// applicationID marks a SQLite file as a bastion journal ("bstj").
const applicationID = 0x6273746a

// migrations take the schema from version i to i+1; PRAGMA user_version holds
// the number applied. Never edit a released migration: append a new one.
//
// No foreign keys and no triggers: the tables are evidence, and verification
// must find damage rather than have the database refuse to show it.
var migrations = []string{
	// 1: the initial journal schema. Documented in docs/journal-format.md.
	`
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT;

CREATE TABLE sessions (
	num        INTEGER PRIMARY KEY,
	id         BLOB NOT NULL UNIQUE,
	start_leaf INTEGER NOT NULL,
	started_ns INTEGER NOT NULL,
	end_leaf   INTEGER,
	ended_ns   INTEGER,
	summary    TEXT NOT NULL DEFAULT '',
	frames     INTEGER NOT NULL DEFAULT 0,
	in_bytes   INTEGER NOT NULL DEFAULT 0,
	out_bytes  INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE frames (
	id      INTEGER PRIMARY KEY,
	session INTEGER NOT NULL,
	seq     INTEGER NOT NULL,
	kind    INTEGER NOT NULL,
	channel INTEGER NOT NULL,
	mono_ns INTEGER NOT NULL,
	wall_ns INTEGER NOT NULL,
	payload BLOB NOT NULL,
	chain   BLOB NOT NULL
) STRICT;
CREATE UNIQUE INDEX frames_by_session ON frames (session, seq);

CREATE TABLE leaves (
	idx     INTEGER PRIMARY KEY,
	type    INTEGER NOT NULL,
	session INTEGER,
	data    BLOB NOT NULL
) STRICT;
CREATE INDEX leaves_by_session ON leaves (session) WHERE session IS NOT NULL;

CREATE TABLE tree_hashes (
	idx  INTEGER PRIMARY KEY,
	hash BLOB NOT NULL
) STRICT;

CREATE TABLE checkpoints (
	tree_size  INTEGER PRIMARY KEY,
	created_ns INTEGER NOT NULL,
	note       BLOB NOT NULL
) STRICT;

CREATE TABLE head (
	one        INTEGER PRIMARY KEY CHECK (one = 1),
	tree_size  INTEGER NOT NULL,
	created_ns INTEGER NOT NULL,
	note       BLOB NOT NULL
) STRICT;
`, // 2: event leaves are indexed by name, so that registries kept in the
	// journal (certificates issued and revoked) are found without reading
	// every leaf. Schema-1 journals wrote no event leaves, so there is
	// nothing to backfill.
	`
ALTER TABLE leaves ADD COLUMN event TEXT;
CREATE INDEX leaves_by_event ON leaves (event, idx) WHERE event IS NOT NULL;
`, // 3: the sessions table keeps only what maps a session ID to the number
	// its rows are filed under. When a session started and ended, what it
	// ran and how much it recorded are read from its signed leaves: a
	// listing column beside them would be one more value to cross-check,
	// and a second copy of a command line that masking must reach.
	`
ALTER TABLE sessions DROP COLUMN started_ns;
ALTER TABLE sessions DROP COLUMN end_leaf;
ALTER TABLE sessions DROP COLUMN ended_ns;
ALTER TABLE sessions DROP COLUMN summary;
ALTER TABLE sessions DROP COLUMN frames;
ALTER TABLE sessions DROP COLUMN in_bytes;
ALTER TABLE sessions DROP COLUMN out_bytes;
`,
}
