package storage

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// schemaObject is one object of a journal's schema, in the form two
// schemas are compared in (docs/journal-format.md, 9.1): a table by its
// columns (name, declared type, NOT NULL, primary key position, default)
// and STRICT flag, which do not depend on how its CREATE statement was
// spelled or altered; an index by its SQL, white space collapsed (an index
// SQLite makes for a UNIQUE constraint has none: it is compared by name).
// Any trigger or view is one no schema has.
type schemaObject struct {
	typ, name, table, def string
}

func (o schemaObject) String() string {
	if o.typ == "table" {
		return "table " + o.name + " (" + o.def + ")"
	}
	return o.typ + " " + o.name + " on " + o.table
}

// describeSchema reads the schema of the database q reads. The statistics
// tables ANALYZE makes (sqlite_stat1 and sqlite_stat4) are left out: they
// change no row; nothing else is, whatever its name.
func describeSchema(ctx context.Context, q queryerCtx) (map[string]schemaObject, error) {
	rows, err := q.QueryContext(ctx, "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema")
	if err != nil {
		return nil, err
	}
	var objs []schemaObject
	for rows.Next() {
		var o schemaObject
		if err := rows.Scan(&o.typ, &o.name, &o.table, &o.def); err != nil {
			rows.Close()
			return nil, err
		}
		if o.typ == "table" && (o.name == "sqlite_stat1" || o.name == "sqlite_stat4") {
			continue
		}
		o.def = strings.Join(strings.Fields(o.def), " ")
		objs = append(objs, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make(map[string]schemaObject, len(objs))
	for _, o := range objs {
		if o.typ == "table" {
			if o.def, err = describeTable(ctx, q, o.name); err != nil {
				return nil, err
			}
		}
		out[o.typ+" "+o.name] = o
	}
	return out, nil
}

// describeTable lists a table's columns and whether it is STRICT.
func describeTable(ctx context.Context, q queryerCtx, name string) (string, error) {
	rows, err := q.QueryContext(ctx, "SELECT name, type, \"notnull\", pk, coalesce(dflt_value, '') FROM pragma_table_xinfo(?) ORDER BY cid", name)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var col, typ, dflt string
		var notNull, pk int
		if err := rows.Scan(&col, &typ, &notNull, &pk, &dflt); err != nil {
			return "", err
		}
		c := col + " " + strings.ToUpper(typ)
		if notNull != 0 {
			c += " NOT NULL"
		}
		if pk != 0 {
			c += fmt.Sprintf(" PRIMARY KEY %d", pk)
		}
		if dflt != "" {
			c += " DEFAULT " + dflt
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	var strict int
	if err := q.QueryRowContext(ctx, "SELECT strict FROM pragma_table_list(?) WHERE schema = 'main'", name).Scan(&strict); err != nil {
		return "", err
	}
	def := strings.Join(cols, ", ")
	if strict != 0 {
		def += "; STRICT"
	}
	return def, nil
}

// expectedSchemas are the schemas migrations 1..n make, built once in an
// in-memory database: the reference a journal's schema is compared with.
var expectedSchemas = sync.OnceValues(func() ([]map[string]schemaObject, error) {
	db, err := sql.Open("sqlite3", ":memory:")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	out := make([]map[string]schemaObject, len(migrations)+1)
	for v, m := range migrations {
		if _, err := db.ExecContext(ctx, m); err != nil {
			return nil, fmt.Errorf("schema %d: %w", v+1, err)
		}
		if out[v+1], err = describeSchema(ctx, db); err != nil {
			return nil, err
		}
	}
	return out, nil
})

// checkFile lists what makes the database q reads other than a journal of a
// known schema. The version and application ID come first: without them
// the schema is not compared.
func checkFile(ctx context.Context, q queryerCtx) ([]string, error) {
	var version, appID int64
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return nil, notJournal(err)
	}
	if err := q.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return nil, notJournal(err)
	}
	if appID != applicationID {
		return []string{fmt.Sprintf("application_id is %#x, not %#x (\"bstj\"): not a bastion journal", uint32(appID), applicationID)}, nil
	}
	if version < 1 || version > int64(len(migrations)) {
		return []string{fmt.Sprintf("user_version (the schema version) is %d; this bastion knows schemas 1 to %d: a journal of a newer bastion, or the version was changed", version, len(migrations))}, nil
	}
	want, err := expectedSchemas()
	if err != nil {
		return nil, err
	}
	got, err := describeSchema(ctx, q)
	if err != nil {
		return nil, err
	}
	var problems []string
	exp := want[version]
	for _, k := range slices.Sorted(maps.Keys(exp)) {
		w, g := exp[k], got[k]
		switch {
		case g == (schemaObject{}):
			problems = append(problems, fmt.Sprintf("schema %d's %s is missing", version, w))
		case g.table != w.table || g.def != w.def:
			problems = append(problems, fmt.Sprintf("%s differs from schema %d's: %s, want %s", k, version, g.def, w.def))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := exp[k]; !ok {
			problems = append(problems, fmt.Sprintf("%s is not part of schema %d (added to the file)", got[k], version))
		}
	}
	return problems, nil
}
