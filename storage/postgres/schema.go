package postgres

// schemaName is the PostgreSQL schema that holds every log's tables. Every
// statement names it: nothing depends on the session's search_path, so a
// table or function of the same name elsewhere never stands in for one of
// ours.
const schemaName = "bastion"

// lockClass is the first key of the advisory locks this package takes
// ("bstj", as SQLite journals' application ID); the second is 0 for schema
// migrations and a log's id for its writer lock.
const lockClass = 0x6273746a

// bootstrap makes the schema and its version table, both shared by every
// log of the database. It runs under the migration lock.
const bootstrap = `
CREATE SCHEMA IF NOT EXISTS bastion;
CREATE TABLE IF NOT EXISTS bastion.schema_version (
	one     integer PRIMARY KEY CHECK (one = 1),
	version integer NOT NULL
);
`

// migrations take the schema from version i to i+1; bastion.schema_version
// holds the number applied. Never edit a released migration: append a new
// one.
//
// Every table but logs is keyed by log_id first: one database holds the
// logs of several serve instances, each with its own origin and key, and
// every query names the log it reads or writes. Shared tables keyed by log
// rather than one PostgreSQL schema per log, because one schema is one
// thing to migrate and to check, its set of tables does not grow with the
// instances, readers that span every log (to come) query one set of
// tables, and no log name ever becomes an SQL identifier.
//
// As in SQLite, no foreign keys and no triggers: the tables are evidence,
// and verification must find damage rather than have the database refuse
// to show it. Integer columns are bigint where SQLite's hold any integer,
// so that a value no row can have (a kind past 255) is still stored and
// reported by readers, not refused by the database.
var migrations = []string{
	// 1: the journal schema of SQLite's schema 3, keyed by log.
	`
CREATE TABLE bastion.logs (
	id      integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name    text NOT NULL UNIQUE,
	holder  text NOT NULL DEFAULT '',
	created timestamp with time zone NOT NULL DEFAULT now()
);

CREATE TABLE bastion.meta (
	log_id integer NOT NULL,
	key    text NOT NULL,
	value  text NOT NULL,
	PRIMARY KEY (log_id, key)
);

CREATE TABLE bastion.sessions (
	log_id     integer NOT NULL,
	num        bigint NOT NULL,
	id         bytea NOT NULL,
	start_leaf bigint NOT NULL,
	PRIMARY KEY (log_id, num),
	UNIQUE (log_id, id)
);

CREATE TABLE bastion.frames (
	log_id  integer NOT NULL,
	session bigint NOT NULL,
	seq     bigint NOT NULL,
	kind    bigint NOT NULL,
	channel bigint NOT NULL,
	mono_ns bigint NOT NULL,
	wall_ns bigint NOT NULL,
	payload bytea NOT NULL,
	chain   bytea NOT NULL,
	PRIMARY KEY (log_id, session, seq)
);

CREATE TABLE bastion.leaves (
	log_id  integer NOT NULL,
	idx     bigint NOT NULL,
	type    bigint NOT NULL,
	session bigint,
	event   text,
	data    bytea NOT NULL,
	PRIMARY KEY (log_id, idx)
);
CREATE INDEX leaves_by_session ON bastion.leaves (log_id, session, idx) WHERE session IS NOT NULL;
CREATE INDEX leaves_by_event ON bastion.leaves (log_id, event, idx) WHERE event IS NOT NULL;

CREATE TABLE bastion.tree_hashes (
	log_id integer NOT NULL,
	idx    bigint NOT NULL,
	hash   bytea NOT NULL,
	PRIMARY KEY (log_id, idx)
);

CREATE TABLE bastion.checkpoints (
	log_id     integer NOT NULL,
	tree_size  bigint NOT NULL,
	created_ns bigint NOT NULL,
	note       bytea NOT NULL,
	PRIMARY KEY (log_id, tree_size)
);

CREATE TABLE bastion.head (
	log_id     integer PRIMARY KEY,
	tree_size  bigint NOT NULL,
	created_ns bigint NOT NULL,
	note       bytea NOT NULL
);
`,
}
