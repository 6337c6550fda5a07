package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// User is a person who logs in with a password.
type User struct {
	ID           int64     `json:"id"`
	Name         string    `json:"name"`
	PasswordHash string    `json:"-"`
	Admin        bool      `json:"admin"`
	Disabled     bool      `json:"disabled"`
	CreatedAt    time.Time `json:"created_at"`
}

// Project groups repositories (the first path component of their names).
type Project struct {
	ID            int64  `json:"id"`
	Name          string `json:"name"`
	Public        bool   `json:"public"`
	ImmutableTags bool   `json:"immutable_tags"`
	QuotaBytes    int64  `json:"quota_bytes"`
	// RequireSignature refuses pulls of images without a signature by
	// one of the project's trusted keys (see TrustedKey).
	RequireSignature bool      `json:"require_signature"`
	CreatedAt        time.Time `json:"created_at"`
}

// Member is a user's role in a project.
type Member struct {
	Project string `json:"project"`
	User    string `json:"user"`
	Role    string `json:"role"`
}

// Robot is a service principal with a secret and per-project roles.
type Robot struct {
	ID          int64             `json:"id"`
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	SecretHash  string            `json:"-"`
	ExpiresAt   time.Time         `json:"expires_at,omitzero"`
	Disabled    bool              `json:"disabled"`
	CreatedBy   string            `json:"created_by,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	Permissions map[string]string `json:"permissions"` // project name -> role
}

// CreateUser adds a user; ErrConflict if the name is taken.
func (s *Store) CreateUser(ctx context.Context, name, passwordHash string, admin bool) (*User, error) {
	u := &User{Name: name, PasswordHash: passwordHash, Admin: admin, CreatedAt: fromMillis(now())}
	err := s.rw.QueryRowContext(ctx, s.d.rebind(`INSERT INTO users(name, password_hash, is_admin, created_at) VALUES (?,?,?,?) RETURNING id`),
		name, passwordHash, b2i(admin), u.CreatedAt.UnixMilli()).Scan(&u.ID)
	if isUnique(err) {
		return nil, ErrConflict
	}
	return u, err
}

func scanUser(row rowScanner) (*User, error) {
	var u User
	var admin, disabled int
	var created int64
	if err := row.Scan(&u.ID, &u.Name, &u.PasswordHash, &admin, &disabled, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	u.Admin, u.Disabled, u.CreatedAt = admin != 0, disabled != 0, fromMillis(created)
	return &u, nil
}

const userCols = `id, name, password_hash, is_admin, disabled, created_at`

// UserByName looks a user up.
func (s *Store) UserByName(ctx context.Context, name string) (*User, error) {
	return scanUser(s.queryRow(ctx, `SELECT `+userCols+` FROM users WHERE name = ?`, name))
}

// ListUsers returns all users by name.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	return queryList(ctx, s, deref(scanUser), `SELECT `+userCols+` FROM users ORDER BY name`)
}

// SetUserDisabled disables or re-enables a user.
func (s *Store) SetUserDisabled(ctx context.Context, name string, disabled bool) error {
	return s.affectOne(ctx, `UPDATE users SET disabled = ? WHERE name = ?`, b2i(disabled), name)
}

// SetUserPassword replaces a user's password hash.
func (s *Store) SetUserPassword(ctx context.Context, name, hash string) error {
	return s.affectOne(ctx, `UPDATE users SET password_hash = ? WHERE name = ?`, hash, name)
}

func (s *Store) affectOne(ctx context.Context, q string, args ...any) error {
	res, err := s.exec(ctx, q, args...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// CreateProject adds a project.
func (s *Store) CreateProject(ctx context.Context, p Project) (*Project, error) {
	p.CreatedAt = fromMillis(now())
	err := s.rw.QueryRowContext(ctx, s.d.rebind(`INSERT INTO projects(name, public, immutable_tags, quota_bytes, require_signature, created_at) VALUES (?,?,?,?,?,?) RETURNING id`),
		p.Name, b2i(p.Public), b2i(p.ImmutableTags), p.QuotaBytes, b2i(p.RequireSignature), p.CreatedAt.UnixMilli()).Scan(&p.ID)
	if isUnique(err) {
		return nil, ErrConflict
	}
	return &p, err
}

// UpdateProject replaces a project's settings.
func (s *Store) UpdateProject(ctx context.Context, p Project) error {
	return s.affectOne(ctx, `UPDATE projects SET public = ?, immutable_tags = ?, quota_bytes = ?, require_signature = ? WHERE name = ?`,
		b2i(p.Public), b2i(p.ImmutableTags), p.QuotaBytes, b2i(p.RequireSignature), p.Name)
}

const projectCols = `id, name, public, immutable_tags, quota_bytes, require_signature, created_at`

func scanProject(row rowScanner) (*Project, error) {
	var p Project
	var pub, imm, req int
	var created int64
	if err := row.Scan(&p.ID, &p.Name, &pub, &imm, &p.QuotaBytes, &req, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	p.Public, p.ImmutableTags, p.RequireSignature, p.CreatedAt = pub != 0, imm != 0, req != 0, fromMillis(created)
	return &p, nil
}

// ProjectByName looks a project up.
func (s *Store) ProjectByName(ctx context.Context, name string) (*Project, error) {
	return scanProject(s.queryRow(ctx, `SELECT `+projectCols+` FROM projects WHERE name = ?`, name))
}

// ListProjects returns all projects by name.
func (s *Store) ListProjects(ctx context.Context) ([]Project, error) {
	return queryList(ctx, s, deref(scanProject), `SELECT `+projectCols+` FROM projects ORDER BY name`)
}

// SetMember adds a user to a project or changes their role.
func (s *Store) SetMember(ctx context.Context, project, user, role string) error {
	return s.tx(ctx, func(t *txn) error {
		var pid, uid int64
		if err := t.queryRow(`SELECT id FROM projects WHERE name = ?`, project).Scan(&pid); err != nil {
			return notFound(err)
		}
		if err := t.queryRow(`SELECT id FROM users WHERE name = ?`, user).Scan(&uid); err != nil {
			return notFound(err)
		}
		_, err := t.exec(`INSERT INTO members(project_id, user_id, role) VALUES (?,?,?)
			ON CONFLICT(project_id, user_id) DO UPDATE SET role = excluded.role`, pid, uid, role)
		return err
	})
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// RemoveMember removes a user from a project.
func (s *Store) RemoveMember(ctx context.Context, project, user string) error {
	return s.affectOne(ctx, `DELETE FROM members WHERE project_id = (SELECT id FROM projects WHERE name = ?)
		AND user_id = (SELECT id FROM users WHERE name = ?)`, project, user)
}

// ListMembers lists a project's members.
func (s *Store) ListMembers(ctx context.Context, project string) ([]Member, error) {
	return queryList(ctx, s, func(r rowScanner) (Member, error) {
		var m Member
		err := r.Scan(&m.Project, &m.User, &m.Role)
		return m, err
	}, `SELECT p.name, u.name, m.role FROM members m JOIN projects p ON p.id = m.project_id
		JOIN users u ON u.id = m.user_id WHERE p.name = ? ORDER BY u.name`, project)
}

// UserRoles returns a user's role per project name.
func (s *Store) UserRoles(ctx context.Context, userID int64) (map[string]string, error) {
	return s.queryRoles(ctx, `SELECT p.name, m.role FROM members m JOIN projects p ON p.id = m.project_id WHERE m.user_id = ?`, userID)
}

// CreateRobot adds a robot with per-project roles.
func (s *Store) CreateRobot(ctx context.Context, r Robot) (*Robot, error) {
	r.CreatedAt = fromMillis(now())
	var exp int64
	if !r.ExpiresAt.IsZero() {
		exp = r.ExpiresAt.UnixMilli()
	}
	err := s.tx(ctx, func(t *txn) error {
		err := t.queryRow(`INSERT INTO robots(name, description, secret_hash, expires_at, created_by, created_at) VALUES (?,?,?,?,?,?) RETURNING id`,
			r.Name, r.Description, r.SecretHash, exp, r.CreatedBy, r.CreatedAt.UnixMilli()).Scan(&r.ID)
		if isUnique(err) {
			return ErrConflict
		}
		if err != nil {
			return err
		}
		for proj, role := range r.Permissions {
			var pid int64
			if err := t.queryRow(`SELECT id FROM projects WHERE name = ?`, proj).Scan(&pid); err != nil {
				if errors.Is(err, sql.ErrNoRows) {
					return &MissingError{What: "project", Name: proj}
				}
				return err
			}
			if _, err := t.exec(`INSERT INTO robot_permissions(robot_id, project_id, role) VALUES (?,?,?)`, r.ID, pid, role); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// MissingError names a referenced row that does not exist.
type MissingError struct{ What, Name string }

func (e *MissingError) Error() string { return e.What + " " + e.Name + " does not exist" }
func (e *MissingError) Unwrap() error { return ErrNotFound }

const robotCols = `id, name, description, secret_hash, expires_at, disabled, created_by, created_at`

func (s *Store) scanRobots(ctx context.Context, q string, args ...any) ([]Robot, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var out []Robot
	for rows.Next() {
		var r Robot
		var exp, created int64
		var dis int
		if err := rows.Scan(&r.ID, &r.Name, &r.Description, &r.SecretHash, &exp, &dis, &r.CreatedBy, &created); err != nil {
			rows.Close()
			return nil, err
		}
		r.ExpiresAt, r.Disabled, r.CreatedAt = fromMillis(exp), dis != 0, fromMillis(created)
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		perms, err := s.robotPerms(ctx, out[i].ID)
		if err != nil {
			return nil, err
		}
		out[i].Permissions = perms
	}
	return out, nil
}

func (s *Store) robotPerms(ctx context.Context, id int64) (map[string]string, error) {
	return s.queryRoles(ctx, `SELECT p.name, rp.role FROM robot_permissions rp JOIN projects p ON p.id = rp.project_id WHERE rp.robot_id = ?`, id)
}

// RobotByName looks a robot up with its permissions.
func (s *Store) RobotByName(ctx context.Context, name string) (*Robot, error) {
	rs, err := s.scanRobots(ctx, `SELECT `+robotCols+` FROM robots WHERE name = ?`, name)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, ErrNotFound
	}
	return &rs[0], nil
}

// ListRobots returns all robots.
func (s *Store) ListRobots(ctx context.Context) ([]Robot, error) {
	return s.scanRobots(ctx, `SELECT `+robotCols+` FROM robots ORDER BY name`)
}

// RevokeRobot disables a robot for good.
func (s *Store) RevokeRobot(ctx context.Context, name string) error {
	return s.affectOne(ctx, `UPDATE robots SET disabled = 1 WHERE name = ?`, name)
}
