package registrygate

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-dev/moat/internal/audit"
	"github.com/moat-dev/moat/internal/registry"
	"github.com/moat-dev/moat/internal/signing"
	"github.com/moat-dev/moat/internal/store"
)

// Trust is the registry's signature enforcement backed by the metadata
// store: each project's require-signature switch and trusted public keys,
// and the registry's own signing key. Keys are stored sealed
// (AES-256-GCM) under the server's master key, each bound to its row
// (project and name), so neither a database dump nor a swapped row yields
// a usable or misplaced key. Trust implements registry.PullGate and
// registry.TrustStore.
//
// Settings are kept in memory and read again after every change made
// through this server, and at most MaxAge after the last read (other
// servers sharing a PostgreSQL database may change them).
type Trust struct {
	Store  *store.Store
	Master *signing.MasterKey
	Audit  *audit.Recorder
	Log    *slog.Logger
	// MaxAge bounds how long settings read from the store are used
	// (default 10s).
	MaxAge time.Duration
	// AllowTTL and DenyTTL are the pull decision cache lifetimes (see
	// signing.PullGate).
	AllowTTL, DenyTTL time.Duration

	mu   sync.Mutex // serialises reloads
	snap atomic.Pointer[trustSnapshot]
}

type trustSnapshot struct {
	at       time.Time
	required map[string]bool
	gate     *signing.PullGate
}

var (
	_ registry.PullGate   = (*Trust)(nil)
	_ registry.TrustStore = (*Trust)(nil)
)

// NewTrust loads the settings once, so that a wrong master key or an
// unreadable database stops the server at start with a clear error.
func NewTrust(ctx context.Context, st *store.Store, mk *signing.MasterKey, rec *audit.Recorder, log *slog.Logger) (*Trust, error) {
	if log == nil {
		log = slog.Default()
	}
	t := &Trust{Store: st, Master: mk, Audit: rec, Log: log}
	if _, err := t.reload(ctx, true); err != nil {
		return nil, err
	}
	return t, nil
}

func trustedKeyAAD(project, name string) []byte {
	return signing.RowAAD("trusted-key", project, name)
}

func serverKeyAAD(name string) []byte { return signing.RowAAD("server-key", name) }

// reload reads the projects that require signatures and their keys. A
// key that does not open (altered, or sealed under another master key) is
// left out, so the project fails closed; strict makes it an error.
func (t *Trust) reload(ctx context.Context, strict bool) (*trustSnapshot, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	projects, err := t.Store.SignatureProjects(ctx)
	if err != nil {
		return nil, fmt.Errorf("trusted keys: %w", err)
	}
	rows, err := t.Store.ListTrustedKeys(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("trusted keys: %w", err)
	}
	snap := &trustSnapshot{at: time.Now(), required: map[string]bool{}}
	keys := map[string][]signing.PublicKey{}
	for _, p := range projects {
		snap.required[p] = true
	}
	for _, row := range rows {
		if !snap.required[row.Project] {
			continue
		}
		pk, err := t.openTrusted(row)
		if err != nil {
			if strict {
				return nil, err
			}
			t.Log.Error("trusted key left out: it does not open", "project", row.Project, "name", row.Name, "error", err.Error())
			continue
		}
		keys[row.Project] = append(keys[row.Project], *pk)
	}
	snap.gate = &signing.PullGate{Keys: keys, AllowTTL: t.AllowTTL, DenyTTL: t.DenyTTL}
	t.snap.Store(snap)
	return snap, nil
}

func (t *Trust) openTrusted(row store.TrustedKey) (*signing.PublicKey, error) {
	pemBytes, err := t.Master.Open(row.Sealed, trustedKeyAAD(row.Project, row.Name))
	if err != nil {
		return nil, fmt.Errorf("trusted key %s of project %s: %w", row.Name, row.Project, err)
	}
	pub, err := signing.ParsePublicKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("trusted key %s of project %s: %w", row.Name, row.Project, err)
	}
	fp := signing.Fingerprint(pub)
	if fp != row.Fingerprint {
		return nil, fmt.Errorf("trusted key %s of project %s: fingerprint %s does not match the stored %s", row.Name, row.Project, fp, row.Fingerprint)
	}
	return &signing.PublicKey{Key: pub, Source: "trusted key " + row.Name + " of project " + row.Project, Fingerprint: fp}, nil
}

func (t *Trust) current(ctx context.Context) *trustSnapshot {
	s := t.snap.Load()
	maxAge := t.MaxAge
	if maxAge <= 0 {
		maxAge = 10 * time.Second
	}
	if s != nil && time.Since(s.at) < maxAge {
		return s
	}
	ns, err := t.reload(ctx, false)
	if err != nil {
		t.Log.Error("reading trusted keys failed; using the settings read before", "error", err.Error())
		return s
	}
	return ns
}

// Changed implements registry.TrustStore: settings are read again.
func (t *Trust) Changed(ctx context.Context) {
	if _, err := t.reload(ctx, false); err != nil {
		t.Log.Error("reading trusted keys failed", "error", err.Error())
	}
}

// Required implements registry.PullGate.
func (t *Trust) Required(project string) bool {
	s := t.current(context.Background())
	return s != nil && s.required[project]
}

// CheckPull implements registry.PullGate: an image of a project that
// requires signatures is served only when signed by one of its trusted
// keys; signature and attestation artifacts stay pullable.
func (t *Trust) CheckPull(ctx context.Context, src registry.ArtifactSource, project, repo, digest string, content []byte) (bool, string, error) {
	s := t.current(ctx)
	if s == nil || !s.required[project] {
		return true, "", nil
	}
	if len(s.gate.Keys[project]) == 0 {
		if signing.IsSigningArtifact(content) {
			return true, "", nil
		}
		return false, fmt.Sprintf("project %s requires signatures but trusts no key yet (an owner adds one: moat project trust add --project %s --key KEY.pub)", project, project), nil
	}
	d, err := s.gate.Check(ctx, src, project, repo, digest, content)
	return d.Allowed, d.Reason, err
}

// ListTrustedKeys implements registry.TrustStore.
func (t *Trust) ListTrustedKeys(ctx context.Context, project string) ([]registry.TrustedKey, error) {
	rows, err := t.Store.ListTrustedKeys(ctx, project)
	if err != nil {
		return nil, err
	}
	out := make([]registry.TrustedKey, 0, len(rows))
	for _, row := range rows {
		pk, err := t.openTrusted(row)
		if err != nil {
			return nil, err
		}
		pemBytes, _ := signing.MarshalPublicKey(pk.Key)
		out = append(out, registry.TrustedKey{Project: row.Project, Name: row.Name, Fingerprint: row.Fingerprint, Algorithm: Algorithm(pk.Key),
			PublicKey: string(pemBytes), AddedBy: row.AddedBy, CreatedAt: row.CreatedAt})
	}
	return out, nil
}

// AddTrustedKey implements registry.TrustStore.
func (t *Trust) AddTrustedKey(ctx context.Context, project, name string, publicKeyPEM []byte, addedBy string) (*registry.TrustedKey, error) {
	pub, err := signing.ParsePublicKey(publicKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", registry.ErrInvalidKey, err)
	}
	// Store the canonical PKIX PEM, nothing else the request carried.
	canon, err := signing.MarshalPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", registry.ErrInvalidKey, err)
	}
	sealed, err := t.Master.Seal(canon, trustedKeyAAD(project, name))
	if err != nil {
		return nil, err
	}
	fp := signing.Fingerprint(pub)
	row, err := t.Store.AddTrustedKey(ctx, store.TrustedKey{Project: project, Name: name, Fingerprint: fp, Sealed: sealed, AddedBy: addedBy})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("project %s: %w", project, err)
	}
	if errors.Is(err, store.ErrConflict) {
		return nil, fmt.Errorf("project %s already has a key named %s or the key %s: %w", project, name, fp, err)
	}
	if err != nil {
		return nil, err
	}
	t.Changed(ctx)
	return &registry.TrustedKey{Project: project, Name: name, Fingerprint: fp, Algorithm: Algorithm(pub), PublicKey: string(canon),
		AddedBy: addedBy, CreatedAt: row.CreatedAt}, nil
}

// RemoveTrustedKey implements registry.TrustStore.
func (t *Trust) RemoveTrustedKey(ctx context.Context, project, name string) error {
	if err := t.Store.RemoveTrustedKey(ctx, project, name); err != nil {
		return err
	}
	t.Changed(ctx)
	return nil
}

// RegistryKeyName is the server key that signs scan-on-push attestations.
const RegistryKeyName = "registry"

// RegistryKey implements registry.TrustStore.
func (t *Trust) RegistryKey(ctx context.Context) (*registry.RegistryKey, error) {
	k, err := t.Store.ServerKeyByName(ctx, RegistryKeyName)
	if err != nil {
		return nil, err
	}
	pub, err := signing.ParsePublicKey([]byte(k.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("registry key: %w", err)
	}
	return &registry.RegistryKey{Fingerprint: k.Fingerprint, Algorithm: Algorithm(pub), PublicKey: k.PublicKey, CreatedAt: k.CreatedAt}, nil
}

// LoadOrCreateRegistryKey returns the registry's signing key, creating
// it (ECDSA P-256, sealed in the store under the master key) on first
// use; creation is audited. The public half stored beside it must match.
func (t *Trust) LoadOrCreateRegistryKey(ctx context.Context) (key crypto.Signer, created bool, err error) {
	aad := serverKeyAAD(RegistryKeyName)
	row, err := t.Store.ServerKeyByName(ctx, RegistryKeyName)
	if errors.Is(err, store.ErrNotFound) {
		k, gerr := signing.GenerateKey("")
		if gerr != nil {
			return nil, false, gerr
		}
		sealed, serr := t.Master.SealPrivateKey(k, aad)
		if serr != nil {
			return nil, false, serr
		}
		pub, _ := signing.MarshalPublicKey(k.Public())
		fp := signing.Fingerprint(k.Public())
		err = t.Store.CreateServerKey(ctx, store.ServerKey{Name: RegistryKeyName, Fingerprint: fp, PublicKey: string(pub), Sealed: sealed})
		if err == nil {
			if t.Audit != nil {
				t.Audit.Record(audit.Event{Actor: "moat", ActorKind: audit.ActorKindSystem, Action: audit.ActionKeyCreate, Allowed: true,
					Detail: "registry signing key " + fp + " created (sealed under " + t.Master.String() + ")"})
			}
			return k, true, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, false, fmt.Errorf("registry key: %w", err)
		}
		// Another server created it first: use that one.
		row, err = t.Store.ServerKeyByName(ctx, RegistryKeyName)
	}
	if err != nil {
		return nil, false, fmt.Errorf("registry key: %w", err)
	}
	k, err := t.Master.OpenPrivateKey(row.Sealed, aad)
	if err != nil {
		return nil, false, fmt.Errorf("registry key: %w", err)
	}
	if fp := signing.Fingerprint(k.Public()); fp != row.Fingerprint {
		return nil, false, fmt.Errorf("registry key: fingerprint %s does not match the stored %s", fp, row.Fingerprint)
	}
	return k, false, nil
}

// SetRegistryKey makes k the registry's signing key (sealed in the store
// under the master key), replacing a generated or earlier key: an operator
// brings the organisation's key, or rotates it. Nothing changes when k is
// already the registry key. A change is audited with both fingerprints;
// attestations signed with the previous key stay verifiable with its
// public key.
func (t *Trust) SetRegistryKey(ctx context.Context, k crypto.Signer) (changed bool, err error) {
	fp := signing.Fingerprint(k.Public())
	prev, err := t.Store.ServerKeyByName(ctx, RegistryKeyName)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, fmt.Errorf("registry key: %w", err)
	}
	if prev != nil && prev.Fingerprint == fp {
		return false, nil
	}
	sealed, err := t.Master.SealPrivateKey(k, serverKeyAAD(RegistryKeyName))
	if err != nil {
		return false, err
	}
	pub, err := signing.MarshalPublicKey(k.Public())
	if err != nil {
		return false, err
	}
	if err := t.Store.ReplaceServerKey(ctx, store.ServerKey{Name: RegistryKeyName, Fingerprint: fp, PublicKey: string(pub), Sealed: sealed}); err != nil {
		return false, fmt.Errorf("registry key: %w", err)
	}
	if t.Audit != nil {
		detail := "registry signing key " + fp + " imported (sealed under " + t.Master.String() + ")"
		if prev != nil {
			detail += ", replacing " + prev.Fingerprint
		}
		t.Audit.Record(audit.Event{Actor: "moat", ActorKind: audit.ActorKindSystem, Action: audit.ActionKeyCreate, Allowed: true, Detail: detail})
	}
	return true, nil
}

// ImportDir imports trusted keys from dir (DIR/PROJECT/*.pub, the layout
// of `moat serve --trusted-keys`): keys a project does not trust yet are
// added under their file name, and a project that gained keys gets
// require-signature on (what a key file meant before keys moved into the
// store). It returns a line per project for the operator.
func (t *Trust) ImportDir(ctx context.Context, dir string) ([]string, error) {
	byProject, err := signing.LoadTrustDir(dir)
	if err != nil {
		return nil, err
	}
	var notes []string
	for project, keys := range byProject {
		if _, err := t.Store.ProjectByName(ctx, project); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				notes = append(notes, fmt.Sprintf("%s/%s: project %s does not exist; create it and restart to import its keys", dir, project, project))
				continue
			}
			return nil, err
		}
		have, err := t.Store.ListTrustedKeys(ctx, project)
		if err != nil {
			return nil, err
		}
		known := map[string]bool{}
		names := map[string]bool{}
		for _, h := range have {
			known[h.Fingerprint], names[h.Name] = true, true
		}
		added := 0
		for _, k := range keys {
			if known[k.Fingerprint] {
				continue
			}
			name := KeyNameFromFile(k.Source)
			for i := 2; names[name]; i++ {
				name = fmt.Sprintf("%s-%d", KeyNameFromFile(k.Source), i)
			}
			pemBytes, err := signing.MarshalPublicKey(k.Key)
			if err != nil {
				return nil, err
			}
			if _, err := t.AddTrustedKey(ctx, project, name, pemBytes, "import:"+dir); err != nil {
				return nil, fmt.Errorf("import %s: %w", k.Source, err)
			}
			if t.Audit != nil {
				t.Audit.Record(audit.Event{Actor: "moat", ActorKind: audit.ActorKindSystem, Action: audit.ActionTrustAdd, Allowed: true,
					Detail: fmt.Sprintf("%s %s %s imported from %s", project, name, k.Fingerprint, k.Source)})
			}
			known[k.Fingerprint], names[name] = true, true
			added++
		}
		if added > 0 {
			if err := t.Store.SetRequireSignature(ctx, project, true); err != nil {
				return nil, err
			}
			if t.Audit != nil {
				t.Audit.Record(audit.Event{Actor: "moat", ActorKind: audit.ActorKindSystem, Action: audit.ActionProjectUpdate, Allowed: true,
					Detail: project + " require_signature=true (keys imported from " + dir + ")"})
			}
			notes = append(notes, fmt.Sprintf("imported %d trusted key(s) of project %s from %s; require-signature is on (manage them with moat project trust)", added, project, dir))
		}
	}
	t.Changed(ctx)
	return notes, nil
}

// KeyNameFromFile turns a key file's name into a key name: the base name
// without extension, lowercased, other characters than [a-z0-9._-] as '-'.
func KeyNameFromFile(path string) string {
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	var b strings.Builder
	for _, c := range strings.ToLower(base) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	n := strings.Trim(b.String(), "-.")
	if n == "" {
		n = "key"
	}
	if len(n) > 64 {
		n = n[:64]
	}
	return n
}

// Algorithm names a public key's algorithm for display.
func Algorithm(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ecdsa-" + strings.ToLower(strings.ReplaceAll(k.Curve.Params().Name, "-", ""))
	case ed25519.PublicKey:
		return "ed25519"
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", pub)
}

// RotateMasterKey re-seals every key the server holds (the registry key
// and the projects' trusted keys) under current, opening those sealed
// under one of previous; all or nothing, in one transaction, before the
// server uses them. Each value stays bound to its row. It is audited with
// both master key IDs and the count, and it is a no-op (nothing audited)
// when every value is already under current. A value under a master key
// that is neither fails the rotation with nothing changed.
func RotateMasterKey(ctx context.Context, st *store.Store, current *signing.MasterKey, previous []*signing.MasterKey, rec *audit.Recorder) (int, error) {
	from := map[string]int{}
	n, err := st.ResealKeys(ctx, func(kind store.SealedKind, id []string, sealed []byte) ([]byte, bool, error) {
		var aad []byte
		switch kind {
		case store.SealedServerKey:
			aad = serverKeyAAD(id[0])
		case store.SealedTrustedKey:
			aad = trustedKeyAAD(id[0], id[1])
		default:
			return nil, false, fmt.Errorf("unknown sealed key kind %q", kind)
		}
		env, err := signing.ParseSealed(sealed)
		if err != nil {
			return nil, false, fmt.Errorf("%s %s: %w", kind, strings.Join(id, "/"), err)
		}
		out, changed, err := current.Reseal(sealed, aad, previous)
		if err != nil {
			return nil, false, fmt.Errorf("%s %s: %w", kind, strings.Join(id, "/"), err)
		}
		if changed {
			from[env.KeyID]++
		}
		return out, changed, nil
	})
	if err != nil {
		return 0, fmt.Errorf("master key rotation (nothing changed): %w", err)
	}
	if n > 0 && rec != nil {
		ids := make([]string, 0, len(from))
		for id := range from {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		rec.Record(audit.Event{Actor: "moat", ActorKind: audit.ActorKindSystem, Action: audit.ActionKeyReseal, Allowed: true,
			Detail: fmt.Sprintf("%d sealed keys re-sealed from master key %s to %s", n, strings.Join(ids, ", "), current.ID())})
	}
	return n, nil
}
