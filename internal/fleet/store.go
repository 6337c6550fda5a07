package fleet

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	_ "github.com/glebarez/go-sqlite" // registers the "sqlite" driver
)

// Store keeps the fleet's state in fleet_* tables of a database/sql
// database (SQLite; the SQL sticks to "?" placeholders, ON CONFLICT and
// BIGINT times so a PostgreSQL dialect only needs the ID column type).
type Store struct {
	db *sql.DB
}

var migrations = []string{
	`CREATE TABLE IF NOT EXISTS fleet_hosts (
		name TEXT PRIMARY KEY,
		engine_id TEXT NOT NULL DEFAULT '',
		engine_version TEXT NOT NULL DEFAULT '',
		os TEXT NOT NULL DEFAULT '',
		arch TEXT NOT NULL DEFAULT '',
		cpus INTEGER NOT NULL DEFAULT 0,
		memory BIGINT NOT NULL DEFAULT 0,
		agent_version TEXT NOT NULL DEFAULT '',
		agent TEXT NOT NULL DEFAULT '',
		first_seen BIGINT NOT NULL,
		last_seen BIGINT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS fleet_containers (
		host TEXT NOT NULL,
		id TEXT NOT NULL,
		name TEXT NOT NULL,
		image TEXT NOT NULL,
		image_id TEXT NOT NULL,
		digest TEXT NOT NULL,
		image_key TEXT NOT NULL,
		state TEXT NOT NULL,
		running INTEGER NOT NULL,
		created BIGINT NOT NULL,
		started_at BIGINT NOT NULL,
		labels TEXT NOT NULL,
		runtime TEXT NOT NULL,
		violations TEXT NOT NULL,
		updated_at BIGINT NOT NULL,
		PRIMARY KEY (host, id)
	)`,
	`CREATE INDEX IF NOT EXISTS fleet_containers_image ON fleet_containers (image_key)`,
	`CREATE TABLE IF NOT EXISTS fleet_stats (
		host TEXT NOT NULL,
		id TEXT NOT NULL,
		sample TEXT NOT NULL,
		noisy INTEGER NOT NULL,
		PRIMARY KEY (host, id)
	)`,
	`CREATE TABLE IF NOT EXISTS fleet_sboms (
		image_key TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		sbom BLOB NOT NULL,
		packages INTEGER NOT NULL,
		received_at BIGINT NOT NULL,
		matched_at BIGINT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS fleet_findings (
		image_key TEXT NOT NULL,
		vuln_id TEXT NOT NULL,
		pkg_ref TEXT NOT NULL,
		ids TEXT NOT NULL,
		severity TEXT NOT NULL,
		detail TEXT NOT NULL,
		first_seen BIGINT NOT NULL,
		PRIMARY KEY (image_key, vuln_id, pkg_ref)
	)`,
	`CREATE TABLE IF NOT EXISTS fleet_events (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		time BIGINT NOT NULL,
		kind TEXT NOT NULL,
		host TEXT NOT NULL,
		container_id TEXT NOT NULL,
		container TEXT NOT NULL,
		image TEXT NOT NULL,
		message TEXT NOT NULL,
		detail TEXT NOT NULL
	)`,
	// Every identifier (ID, alias, record ID; upper case) of each finding,
	// for exposure lookups by any of them.
	`CREATE TABLE IF NOT EXISTS fleet_finding_ids (
		id TEXT NOT NULL,
		image_key TEXT NOT NULL,
		vuln_id TEXT NOT NULL,
		pkg_ref TEXT NOT NULL,
		PRIMARY KEY (id, image_key, vuln_id, pkg_ref)
	)`,
	`CREATE INDEX IF NOT EXISTS fleet_finding_ids_finding ON fleet_finding_ids (image_key, vuln_id, pkg_ref)`,
}

// idsMigration is the schema version that created fleet_finding_ids;
// findings stored by an older schema are indexed when it is reached.
const idsMigration = 8

// Open migrates db (creating the fleet_* tables) and returns a Store on it.
func Open(ctx context.Context, db *sql.DB) (*Store, error) {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS fleet_schema (version INTEGER NOT NULL)`); err != nil {
		return nil, fmt.Errorf("fleet schema: %w", err)
	}
	var v int
	err := db.QueryRowContext(ctx, `SELECT version FROM fleet_schema`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := db.ExecContext(ctx, `INSERT INTO fleet_schema (version) VALUES (0)`); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	for i := v; i < len(migrations); i++ {
		if _, err := db.ExecContext(ctx, migrations[i]); err != nil {
			return nil, fmt.Errorf("fleet migration %d: %w", i+1, err)
		}
		if _, err := db.ExecContext(ctx, `UPDATE fleet_schema SET version = ?`, i+1); err != nil {
			return nil, err
		}
	}
	st := &Store{db: db}
	if v < idsMigration && len(migrations) >= idsMigration {
		if err := st.tx(ctx, func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT image_key, vuln_id, pkg_ref, ids FROM fleet_findings`)
			if err != nil {
				return err
			}
			type row struct{ key, v, p, ids string }
			var all []row
			for rows.Next() {
				var r row
				if err := rows.Scan(&r.key, &r.v, &r.p, &r.ids); err != nil {
					rows.Close()
					return err
				}
				all = append(all, r)
			}
			rows.Close()
			for _, r := range all {
				if err := insertIDs(ctx, tx, r.key, r.v, r.p, r.ids); err != nil {
					return err
				}
			}
			return rows.Err()
		}); err != nil {
			return nil, fmt.Errorf("indexing finding identifiers: %w", err)
		}
	}
	return st, nil
}

// OpenSQLite opens (creating) a SQLite database file for the fleet.
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	// One connection: SQLite has one writer, and serialising in Go avoids
	// busy errors; the fleet's queries are small.
	db.SetMaxOpenConns(1)
	st, err := Open(ctx, db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// Close closes the underlying database.
func (s *Store) Close() error { return s.db.Close() }

// ErrHostOwned is returned when an agent reports for a host registered by
// another robot account.
var ErrHostOwned = errors.New("host is reported by another agent account")

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain data structures are encoded
	}
	return string(b)
}

func (s *Store) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// touchHost records h as seen now, reported by agent. admin may take over a
// host registered by another account.
func touchHost(ctx context.Context, tx *sql.Tx, h *Host, agent string, admin bool, now time.Time) error {
	var owner string
	err := tx.QueryRowContext(ctx, `SELECT agent FROM fleet_hosts WHERE name = ?`, h.Name).Scan(&owner)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.ExecContext(ctx, `INSERT INTO fleet_hosts (name, engine_id, engine_version, os, arch, cpus, memory, agent_version, agent, first_seen, last_seen)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			h.Name, h.EngineID, h.EngineVersion, h.OS, h.Arch, h.CPUs, h.MemoryBytes, h.AgentVersion, agent, ms(now), ms(now))
		return err
	case err != nil:
		return err
	}
	if owner != agent && !admin {
		return fmt.Errorf("%w (%s)", ErrHostOwned, owner)
	}
	if h.EngineID == "" && h.EngineVersion == "" {
		_, err = tx.ExecContext(ctx, `UPDATE fleet_hosts SET last_seen = ? WHERE name = ?`, ms(now), h.Name)
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE fleet_hosts SET engine_id = ?, engine_version = ?, os = ?, arch = ?, cpus = ?, memory = ?, agent_version = ?, last_seen = ? WHERE name = ?`,
		h.EngineID, h.EngineVersion, h.OS, h.Arch, h.CPUs, h.MemoryBytes, h.AgentVersion, ms(now), h.Name)
	return err
}

type prevContainer struct {
	running bool
	started int64
}

// applyReport writes an inventory report and returns the events it causes.
func (s *Store) applyReport(ctx context.Context, r *Report, agent string, admin bool, check func(*Container) []Violation, now time.Time) ([]Event, error) {
	var evs []Event
	err := s.tx(ctx, func(tx *sql.Tx) error {
		evs = nil
		if err := touchHost(ctx, tx, &r.Host, agent, admin, now); err != nil {
			return err
		}
		prev := map[string]prevContainer{}
		rows, err := tx.QueryContext(ctx, `SELECT id, running, started_at FROM fleet_containers WHERE host = ?`, r.Host.Name)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			var p prevContainer
			if err := rows.Scan(&id, &p.running, &p.started); err != nil {
				rows.Close()
				return err
			}
			prev[id] = p
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		seen := map[string]bool{}
		for i := range r.Containers {
			c := &r.Containers[i]
			seen[c.ID] = true
			v := check(c)
			if v == nil {
				v = []Violation{}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO fleet_containers (host, id, name, image, image_id, digest, image_key, state, running, created, started_at, labels, runtime, violations, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (host, id) DO UPDATE SET name = excluded.name, image = excluded.image, image_id = excluded.image_id,
					digest = excluded.digest, image_key = excluded.image_key, state = excluded.state, running = excluded.running,
					created = excluded.created, started_at = excluded.started_at, labels = excluded.labels, runtime = excluded.runtime,
					violations = excluded.violations, updated_at = excluded.updated_at`,
				r.Host.Name, c.ID, c.Name, c.Image, c.ImageID, c.Digest, c.ImageKey(), c.State, c.Running(), ms(c.Created), ms(c.StartedAt),
				mustJSON(c.Labels), mustJSON(c.Runtime), mustJSON(v), ms(now)); err != nil {
				return err
			}
			p, existed := prev[c.ID]
			if c.Running() && len(v) > 0 && (!existed || !p.running || p.started != ms(c.StartedAt)) {
				evs = append(evs, Event{Time: now, Kind: EventNonCompliantStart, Host: r.Host.Name, ContainerID: c.ID, Container: c.Name, Image: c.Image,
					Message: fmt.Sprintf("container %s started with %d least-privilege violation(s): %s", c.Name, len(v), ruleList(v)), Detail: v})
			}
		}
		gone := r.Removed
		if r.Full {
			gone = nil
			for id := range prev {
				if !seen[id] {
					gone = append(gone, id)
				}
			}
		}
		for _, id := range gone {
			if _, err := tx.ExecContext(ctx, `DELETE FROM fleet_containers WHERE host = ? AND id = ?`, r.Host.Name, id); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM fleet_stats WHERE host = ? AND id = ?`, r.Host.Name, id); err != nil {
				return err
			}
		}
		return insertEvents(ctx, tx, evs)
	})
	return evs, err
}

func ruleList(v []Violation) string {
	var rules []string
	for _, x := range v {
		if len(rules) == 0 || rules[len(rules)-1] != x.Rule {
			rules = append(rules, x.Rule)
		}
	}
	return strings.Join(rules, ", ")
}

func insertEvents(ctx context.Context, tx *sql.Tx, evs []Event) error {
	for _, e := range evs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO fleet_events (time, kind, host, container_id, container, image, message, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			ms(e.Time), e.Kind, e.Host, e.ContainerID, e.Container, e.Image, e.Message, mustJSON(e.Detail)); err != nil {
			return err
		}
	}
	return nil
}

// applyStats stores the latest sample per container and returns the
// noisy-neighbour events (a container becoming noisy).
func (s *Store) applyStats(ctx context.Context, r *StatsReport, agent string, admin bool, now time.Time) ([]Event, error) {
	var evs []Event
	err := s.tx(ctx, func(tx *sql.Tx) error {
		evs = nil
		if err := touchHost(ctx, tx, &Host{Name: r.Host}, agent, admin, now); err != nil {
			return err
		}
		for i := range r.Samples {
			sm := &r.Samples[i]
			var name, image string
			err := tx.QueryRowContext(ctx, `SELECT name, image FROM fleet_containers WHERE host = ? AND id = ?`, r.Host, sm.ContainerID).Scan(&name, &image)
			if errors.Is(err, sql.ErrNoRows) {
				continue // not (or no longer) in the inventory
			}
			if err != nil {
				return err
			}
			var wasNoisy bool
			err = tx.QueryRowContext(ctx, `SELECT noisy FROM fleet_stats WHERE host = ? AND id = ?`, r.Host, sm.ContainerID).Scan(&wasNoisy)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO fleet_stats (host, id, sample, noisy) VALUES (?, ?, ?, ?)
				ON CONFLICT (host, id) DO UPDATE SET sample = excluded.sample, noisy = excluded.noisy`,
				r.Host, sm.ContainerID, mustJSON(sm), sm.Noisy); err != nil {
				return err
			}
			if sm.Noisy && !wasNoisy {
				evs = append(evs, Event{Time: now, Kind: EventNoisyNeighbour, Host: r.Host, ContainerID: sm.ContainerID, Container: name, Image: image,
					Message: fmt.Sprintf("container %s is a noisy neighbour: %s", name, sm.NoisyReason), Detail: sm})
			}
		}
		return insertEvents(ctx, tx, evs)
	})
	return evs, err
}

// missing returns the keys among keys that have no SBOM.
func (s *Store) missing(ctx context.Context, keys []string) ([]string, error) {
	out := []string{}
	seen := map[string]bool{}
	for _, k := range keys {
		if k == "" || seen[k] {
			continue
		}
		seen[k] = true
		var one int
		err := s.db.QueryRowContext(ctx, `SELECT 1 FROM fleet_sboms WHERE image_key = ?`, k).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			out = append(out, k)
		} else if err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}

// storedFinding is one row of fleet_findings.
type storedFinding struct {
	VulnID, PkgRef, IDs, Severity string
	Detail                        ExposedContainer // image/container fields empty
}

func (f *storedFinding) key() string { return f.VulnID + "\x00" + f.PkgRef }

// putSBOM stores an image's SBOM and its findings.
func (s *Store) putSBOM(ctx context.Context, key, name string, raw []byte, packages int, fs []storedFinding, now time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO fleet_sboms (image_key, name, sbom, packages, received_at, matched_at) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (image_key) DO UPDATE SET name = excluded.name, sbom = excluded.sbom, packages = excluded.packages,
				received_at = excluded.received_at, matched_at = excluded.matched_at`,
			key, name, raw, packages, ms(now), ms(now)); err != nil {
			return err
		}
		_, err := replaceFindings(ctx, tx, key, fs, now)
		return err
	})
}

// replaceFindings writes only the difference between an image's stored
// findings and fs; it returns the findings that are new.
func replaceFindings(ctx context.Context, tx *sql.Tx, key string, fs []storedFinding, now time.Time) ([]storedFinding, error) {
	old := map[string]string{} // finding key -> ids
	rows, err := tx.QueryContext(ctx, `SELECT vuln_id, pkg_ref, ids FROM fleet_findings WHERE image_key = ?`, key)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var v, p, ids string
		if err := rows.Scan(&v, &p, &ids); err != nil {
			rows.Close()
			return nil, err
		}
		old[v+"\x00"+p] = ids
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var added []storedFinding
	keep := map[string]bool{}
	for _, f := range fs {
		k := f.key()
		if keep[k] {
			continue
		}
		keep[k] = true
		if oldIDs, ok := old[k]; ok {
			if _, err := tx.ExecContext(ctx, `UPDATE fleet_findings SET ids = ?, severity = ?, detail = ? WHERE image_key = ? AND vuln_id = ? AND pkg_ref = ? AND (ids <> ? OR severity <> ? OR detail <> ?)`,
				f.IDs, f.Severity, mustJSON(f.Detail), key, f.VulnID, f.PkgRef, f.IDs, f.Severity, mustJSON(f.Detail)); err != nil {
				return nil, err
			}
			if oldIDs != f.IDs {
				if err := deleteIDs(ctx, tx, key, f.VulnID, f.PkgRef); err != nil {
					return nil, err
				}
				if err := insertIDs(ctx, tx, key, f.VulnID, f.PkgRef, f.IDs); err != nil {
					return nil, err
				}
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO fleet_findings (image_key, vuln_id, pkg_ref, ids, severity, detail, first_seen) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			key, f.VulnID, f.PkgRef, f.IDs, f.Severity, mustJSON(f.Detail), ms(now)); err != nil {
			return nil, err
		}
		if err := insertIDs(ctx, tx, key, f.VulnID, f.PkgRef, f.IDs); err != nil {
			return nil, err
		}
		added = append(added, f)
	}
	for k := range old {
		if !keep[k] {
			v, p, _ := strings.Cut(k, "\x00")
			if _, err := tx.ExecContext(ctx, `DELETE FROM fleet_findings WHERE image_key = ? AND vuln_id = ? AND pkg_ref = ?`, key, v, p); err != nil {
				return nil, err
			}
			if err := deleteIDs(ctx, tx, key, v, p); err != nil {
				return nil, err
			}
		}
	}
	return added, nil
}

// insertIDs indexes the identifiers of one finding (ids is the
// space-separated, space-framed list).
func insertIDs(ctx context.Context, tx *sql.Tx, key, vuln, pkg, ids string) error {
	seen := map[string]bool{}
	for _, id := range strings.Fields(ids) {
		if seen[id] {
			continue
		}
		seen[id] = true
		if _, err := tx.ExecContext(ctx, `INSERT INTO fleet_finding_ids (id, image_key, vuln_id, pkg_ref) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`, id, key, vuln, pkg); err != nil {
			return err
		}
	}
	return nil
}

func deleteIDs(ctx context.Context, tx *sql.Tx, key, vuln, pkg string) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM fleet_finding_ids WHERE image_key = ? AND vuln_id = ? AND pkg_ref = ?`, key, vuln, pkg)
	return err
}

// sbomKeys lists the image keys with a stored SBOM.
func (s *Store) sbomKeys(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT image_key FROM fleet_sboms ORDER BY image_key`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

func (s *Store) sbom(ctx context.Context, key string) ([]byte, error) {
	var raw []byte
	err := s.db.QueryRowContext(ctx, `SELECT sbom FROM fleet_sboms WHERE image_key = ?`, key).Scan(&raw)
	return raw, err
}

// rematched writes an image's re-matched findings and returns the events
// for running containers newly exposed by findings that appeared.
func (s *Store) rematched(ctx context.Context, key string, fs []storedFinding, now time.Time) ([]Event, error) {
	var evs []Event
	err := s.tx(ctx, func(tx *sql.Tx) error {
		evs = nil
		added, err := replaceFindings(ctx, tx, key, fs, now)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE fleet_sboms SET matched_at = ? WHERE image_key = ?`, ms(now), key); err != nil {
			return err
		}
		if len(added) == 0 {
			return nil
		}
		var ids []string
		for _, f := range added {
			if len(ids) == 0 || ids[len(ids)-1] != f.VulnID {
				ids = append(ids, f.VulnID)
			}
		}
		rows, err := tx.QueryContext(ctx, `SELECT host, id, name, image FROM fleet_containers WHERE image_key = ? AND running = 1`, key)
		if err != nil {
			return err
		}
		for rows.Next() {
			e := Event{Time: now, Kind: EventNewlyExposed, Detail: ids}
			if err := rows.Scan(&e.Host, &e.ContainerID, &e.Container, &e.Image); err != nil {
				rows.Close()
				return err
			}
			e.Message = fmt.Sprintf("running container %s is newly exposed to %s", e.Container, strings.Join(ids, ", "))
			evs = append(evs, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		return insertEvents(ctx, tx, evs)
	})
	return evs, err
}

// hosts lists the hosts with their running container counts.
func (s *Store) hosts(ctx context.Context) ([]Host, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT h.name, h.engine_id, h.engine_version, h.os, h.arch, h.cpus, h.memory, h.agent_version, h.agent, h.first_seen, h.last_seen,
		(SELECT COUNT(*) FROM fleet_containers c WHERE c.host = h.name AND c.running = 1)
		FROM fleet_hosts h ORDER BY h.name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Host{}
	for rows.Next() {
		var h Host
		var first, last int64
		if err := rows.Scan(&h.Name, &h.EngineID, &h.EngineVersion, &h.OS, &h.Arch, &h.CPUs, &h.MemoryBytes, &h.AgentVersion, &h.Agent, &first, &last, &h.Containers); err != nil {
			return nil, err
		}
		h.FirstSeen, h.LastSeen = fromMS(first), fromMS(last)
		out = append(out, h)
	}
	return out, rows.Err()
}

// running lists running containers (of one host when host is set).
func (s *Store) running(ctx context.Context, host string) ([]RunningContainer, error) {
	q := `SELECT c.host, c.id, c.name, c.image, c.image_key, c.state, c.started_at, c.runtime, c.violations, c.updated_at,
		(SELECT COUNT(*) FROM fleet_sboms b WHERE b.image_key = c.image_key), COALESCE(st.sample, '')
		FROM fleet_containers c LEFT JOIN fleet_stats st ON st.host = c.host AND st.id = c.id
		WHERE c.running = 1`
	args := []any{}
	if host != "" {
		q += ` AND c.host = ?`
		args = append(args, host)
	}
	q += ` ORDER BY c.host, c.name, c.id`
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	out := []RunningContainer{}
	for rows.Next() {
		var rc RunningContainer
		var started, updated int64
		var rt, viol, sample string
		var scanned int
		if err := rows.Scan(&rc.Host, &rc.ID, &rc.Name, &rc.Image, &rc.ImageKey, &rc.State, &started, &rt, &viol, &updated, &scanned, &sample); err != nil {
			rows.Close()
			return nil, err
		}
		rc.StartedAt, rc.LastUpdated, rc.Scanned = fromMS(started), fromMS(updated), scanned > 0
		if err := json.Unmarshal([]byte(rt), &rc.Runtime); err != nil {
			rows.Close()
			return nil, fmt.Errorf("stored runtime of %s: %w", rc.ID, err)
		}
		if err := json.Unmarshal([]byte(viol), &rc.Violations); err != nil {
			rows.Close()
			return nil, fmt.Errorf("stored violations of %s: %w", rc.ID, err)
		}
		if sample != "" {
			rc.Stats = &Sample{}
			if err := json.Unmarshal([]byte(sample), rc.Stats); err != nil {
				rows.Close()
				return nil, fmt.Errorf("stored sample of %s: %w", rc.ID, err)
			}
		}
		rc.Findings = map[string]int{}
		out = append(out, rc)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	counts, err := s.severityCounts(ctx)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if c, ok := counts[out[i].ImageKey]; ok {
			out[i].Findings = c
		}
	}
	return out, nil
}

// severityCounts counts findings per image key and severity.
func (s *Store) severityCounts(ctx context.Context) (map[string]map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT image_key, severity, COUNT(*) FROM fleet_findings
		WHERE image_key IN (SELECT image_key FROM fleet_containers WHERE running = 1) GROUP BY image_key, severity`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]map[string]int{}
	for rows.Next() {
		var k, sev string
		var n int
		if err := rows.Scan(&k, &sev, &n); err != nil {
			return nil, err
		}
		if out[k] == nil {
			out[k] = map[string]int{}
		}
		out[k][sev] = n
	}
	return out, rows.Err()
}

// exposure lists running containers whose image has a finding known by id
// (any of its identifiers, case-insensitive).
func (s *Store) exposure(ctx context.Context, id string) ([]ExposedContainer, error) {
	id = strings.ToUpper(strings.TrimSpace(id))
	rows, err := s.db.QueryContext(ctx, `SELECT c.host, c.id, c.name, c.image, c.image_key, f.detail
		FROM fleet_finding_ids x
		JOIN fleet_findings f ON f.image_key = x.image_key AND f.vuln_id = x.vuln_id AND f.pkg_ref = x.pkg_ref
		JOIN fleet_containers c ON c.image_key = x.image_key
		WHERE x.id = ? AND c.running = 1
		ORDER BY c.host, c.name, c.id, f.vuln_id, f.pkg_ref`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []ExposedContainer{}
	for rows.Next() {
		var e ExposedContainer
		var host, cid, name, image, key, detail string
		if err := rows.Scan(&host, &cid, &name, &image, &key, &detail); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(detail), &e); err != nil {
			return nil, fmt.Errorf("stored finding: %w", err)
		}
		e.Host, e.ContainerID, e.Container, e.Image, e.ImageKey = host, cid, name, image, key
		out = append(out, e)
	}
	return out, rows.Err()
}

// events lists events with an ID above after, oldest first.
func (s *Store) events(ctx context.Context, after int64, limit int) ([]Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, time, kind, host, container_id, container, image, message, detail FROM fleet_events WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		var e Event
		var t int64
		var detail string
		if err := rows.Scan(&e.ID, &t, &e.Kind, &e.Host, &e.ContainerID, &e.Container, &e.Image, &e.Message, &detail); err != nil {
			return nil, err
		}
		e.Time = fromMS(t)
		var d any
		if json.Unmarshal([]byte(detail), &d) == nil {
			e.Detail = d
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// reevaluate recomputes the stored violations of every container.
func (s *Store) reevaluate(ctx context.Context, check func(host string, c *Container) []Violation) (int, error) {
	type row struct {
		host, viol string
		c          Container
	}
	rows, err := s.db.QueryContext(ctx, `SELECT host, id, name, image, image_id, digest, state, labels, runtime, violations FROM fleet_containers`)
	if err != nil {
		return 0, err
	}
	var all []row
	for rows.Next() {
		var r row
		var labels, rt string
		if err := rows.Scan(&r.host, &r.c.ID, &r.c.Name, &r.c.Image, &r.c.ImageID, &r.c.Digest, &r.c.State, &labels, &rt, &r.viol); err != nil {
			rows.Close()
			return 0, err
		}
		if err := json.Unmarshal([]byte(labels), &r.c.Labels); err != nil {
			rows.Close()
			return 0, fmt.Errorf("stored labels of %s: %w", r.c.ID, err)
		}
		if err := json.Unmarshal([]byte(rt), &r.c.Runtime); err != nil {
			rows.Close()
			return 0, fmt.Errorf("stored runtime of %s: %w", r.c.ID, err)
		}
		all = append(all, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	changed := 0
	err = s.tx(ctx, func(tx *sql.Tx) error {
		changed = 0
		for _, r := range all {
			v := check(r.host, &r.c)
			if v == nil {
				v = []Violation{}
			}
			nv := mustJSON(v)
			if nv == r.viol {
				continue
			}
			changed++
			if _, err := tx.ExecContext(ctx, `UPDATE fleet_containers SET violations = ? WHERE host = ? AND id = ?`, nv, r.host, r.c.ID); err != nil {
				return err
			}
		}
		return nil
	})
	return changed, err
}

// sbomAccess says whether key has an SBOM, and whether a container on a
// host reported by agent uses it.
func (s *Store) sbomAccess(ctx context.Context, key, agent string) (have, uses bool, err error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM fleet_sboms WHERE image_key = ?`, key).Scan(&n); err != nil {
		return false, false, err
	}
	have = n > 0
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM fleet_containers c JOIN fleet_hosts h ON h.name = c.host WHERE c.image_key = ? AND h.agent = ?`, key, agent).Scan(&n); err != nil {
		return false, false, err
	}
	return have, n > 0, nil
}
