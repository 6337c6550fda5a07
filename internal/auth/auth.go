package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/moat-dev/moat/internal/store"
)

// Principal kinds.
const (
	KindUser      = "user"
	KindRobot     = "robot"
	KindAnonymous = "anonymous"
)

// RobotPrefix starts every robot account name.
const RobotPrefix = "robot$"

// Principal is an authenticated caller.
type Principal struct {
	Kind  string
	Name  string
	Admin bool
	// Roles maps project names to the caller's role there.
	Roles map[string]string
	// Granted, when non-nil, is the exact access a bearer token carries;
	// authorisation then never exceeds it.
	Granted []Access
}

// Anonymous is the unauthenticated caller.
var Anonymous = &Principal{Kind: KindAnonymous}

// ErrUnauthorized means credentials were missing, wrong, disabled or expired.
var ErrUnauthorized = errors.New("authentication required")

// Service authenticates callers, issues tokens and authorises actions.
type Service struct {
	Store *store.Store
	// ServiceName is the token audience ("service" in the challenge).
	ServiceName string
	Issuer      string
	TokenTTL    time.Duration
	// AllowAnonymous lets unauthenticated callers pull public projects.
	AllowAnonymous bool

	key *ecdsa.PrivateKey
	kid string

	mu       sync.Mutex
	creds    map[[32]byte]credEntry  // verified passwords
	accounts map[string]accountEntry // kind:name -> status
	projects map[string]projectEntry // project -> settings
	tokens   map[string]tokenEntry   // verified JWTs
}

type credEntry struct {
	name, kind string
	until      time.Time
}

type accountEntry struct {
	p     *Principal // nil: inactive
	until time.Time
}

type projectEntry struct {
	p     *store.Project // nil: missing
	until time.Time
}

type tokenEntry struct {
	c     *Claims
	until time.Time
}

// cacheTTL bounds how long a status change takes to reach a request when it
// was not made through this process (changes through it invalidate at once).
const cacheTTL = 2 * time.Second

// NewService loads (or creates) the token signing key at keyPath.
func NewService(st *store.Store, keyPath, serviceName string) (*Service, error) {
	key, err := loadOrCreateKey(keyPath)
	if err != nil {
		return nil, err
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	sum := sha256.Sum256(der)
	return &Service{
		Store: st, ServiceName: serviceName, Issuer: "moat", TokenTTL: 5 * time.Minute,
		key: key, kid: fmt.Sprintf("%x", sum[:8]),
		creds: map[[32]byte]credEntry{}, accounts: map[string]accountEntry{},
		projects: map[string]projectEntry{}, tokens: map[string]tokenEntry{},
	}, nil
}

func loadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("token key %s: not PEM", path)
		}
		return x509.ParseECPrivateKey(blk.Bytes)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return key, os.Rename(tmp, path)
}

// Invalidate drops cached state so changes to accounts, memberships and
// projects apply to the next request.
func (s *Service) Invalidate() {
	s.mu.Lock()
	clear(s.creds)
	clear(s.accounts)
	clear(s.projects)
	clear(s.tokens)
	s.mu.Unlock()
}

// Authenticate checks a name and password (or robot secret).
func (s *Service) Authenticate(ctx context.Context, name, password string) (*Principal, error) {
	key := sha256.Sum256([]byte(name + "\x00" + password))
	s.mu.Lock()
	ce, ok := s.creds[key]
	s.mu.Unlock()
	if !ok || time.Now().After(ce.until) {
		kind := KindUser
		var hash string
		if strings.HasPrefix(name, RobotPrefix) {
			kind = KindRobot
			r, err := s.Store.RobotByName(ctx, name)
			if err != nil {
				return nil, ErrUnauthorized
			}
			hash = r.SecretHash
		} else {
			u, err := s.Store.UserByName(ctx, name)
			if err != nil {
				return nil, ErrUnauthorized
			}
			hash = u.PasswordHash
		}
		ok, err := VerifyPassword(hash, password)
		if err != nil || !ok {
			return nil, ErrUnauthorized
		}
		ce = credEntry{name: name, kind: kind, until: time.Now().Add(time.Minute)}
		s.mu.Lock()
		s.creds[key] = ce
		s.mu.Unlock()
	}
	p, err := s.account(ctx, ce.kind, ce.name)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// account loads an active account's principal (roles included), or
// ErrUnauthorized when it is missing, disabled or expired.
func (s *Service) account(ctx context.Context, kind, name string) (*Principal, error) {
	k := kind + ":" + name
	s.mu.Lock()
	ae, ok := s.accounts[k]
	s.mu.Unlock()
	if ok && time.Now().Before(ae.until) {
		if ae.p == nil {
			return nil, ErrUnauthorized
		}
		return ae.p, nil
	}
	var p *Principal
	switch kind {
	case KindUser:
		u, err := s.Store.UserByName(ctx, name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if err == nil && !u.Disabled {
			roles, err := s.Store.UserRoles(ctx, u.ID)
			if err != nil {
				return nil, err
			}
			p = &Principal{Kind: KindUser, Name: name, Admin: u.Admin, Roles: roles}
		}
	case KindRobot:
		r, err := s.Store.RobotByName(ctx, name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if err == nil && !r.Disabled && (r.ExpiresAt.IsZero() || time.Now().Before(r.ExpiresAt)) {
			p = &Principal{Kind: KindRobot, Name: name, Roles: r.Permissions}
		}
	}
	until := time.Now().Add(cacheTTL)
	s.mu.Lock()
	s.accounts[k] = accountEntry{p: p, until: until}
	s.mu.Unlock()
	if p == nil {
		return nil, ErrUnauthorized
	}
	return p, nil
}

// Project returns a project's settings (cached briefly); nil if missing.
func (s *Service) Project(ctx context.Context, name string) (*store.Project, error) {
	s.mu.Lock()
	pe, ok := s.projects[name]
	s.mu.Unlock()
	if ok && time.Now().Before(pe.until) {
		return pe.p, nil
	}
	p, err := s.Store.ProjectByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		p, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.projects[name] = projectEntry{p: p, until: time.Now().Add(cacheTTL)}
	s.mu.Unlock()
	return p, nil
}

// Allowed returns the subset of actions p may perform on a resource
// ("repository" with a repository name, or "registry" with "catalog").
func (s *Service) Allowed(ctx context.Context, p *Principal, typ, name string, actions []string) ([]string, error) {
	var can []string
	switch typ {
	case "registry":
		if name == "catalog" && (p.Kind != KindAnonymous || s.AllowAnonymous) {
			can = []string{ActionAll}
		}
	case "repository":
		switch {
		case p.Admin:
			can = []string{ActionPull, ActionPush, ActionDelete, ActionAll}
		default:
			proj := ProjectOf(name)
			can = RoleActions(p.Roles[proj])
			if !slices.Contains(can, ActionPull) {
				pr, err := s.Project(ctx, proj)
				if err != nil {
					return nil, err
				}
				if pr != nil && pr.Public && (p.Kind != KindAnonymous || s.AllowAnonymous) {
					can = append(can, ActionPull)
				}
			}
		}
	}
	if p.Granted != nil {
		var granted []string
		for _, g := range p.Granted {
			if g.Type == typ && g.Name == name {
				granted = append(granted, g.Actions...)
			}
		}
		can = slices.DeleteFunc(slices.Clone(can), func(a string) bool {
			return !slices.Contains(granted, a) && !slices.Contains(granted, ActionAll)
		})
	}
	if typ == "repository" && slices.Contains(actions, ActionAll) {
		// "*" asks for everything: grant each action the caller has, and
		// "*" itself only to those who have them all.
		actions = []string{ActionPull, ActionPush, ActionDelete}
		if slices.Contains(can, ActionPull) && slices.Contains(can, ActionPush) && slices.Contains(can, ActionDelete) {
			can = append(slices.Clone(can), ActionAll)
			actions = append(actions, ActionAll)
		}
	}
	var out []string
	for _, a := range actions {
		if slices.Contains(can, a) || (slices.Contains(can, ActionAll) && typ == "registry") {
			out = append(out, a)
		}
	}
	return out, nil
}

// Can reports whether p may perform action on a repository.
func (s *Service) Can(ctx context.Context, p *Principal, repo, action string) (bool, error) {
	got, err := s.Allowed(ctx, p, "repository", repo, []string{action})
	return len(got) == 1, err
}

// Claims are the JWT claims of a registry token.
type Claims struct {
	jwt.RegisteredClaims
	Kind   string   `json:"kind,omitempty"`
	Access []Access `json:"access"`
}

// IssueToken signs a short-lived token for p carrying the access it is
// allowed out of the requested scopes.
func (s *Service) IssueToken(ctx context.Context, p *Principal, scopes []Access) (string, time.Time, error) {
	granted := []Access{}
	for _, sc := range scopes {
		acts, err := s.Allowed(ctx, p, sc.Type, sc.Name, sc.Actions)
		if err != nil {
			return "", time.Time{}, err
		}
		if len(acts) > 0 {
			granted = append(granted, Access{Type: sc.Type, Name: sc.Name, Actions: acts})
		}
	}
	now := time.Now()
	exp := now.Add(s.TokenTTL)
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.Issuer, Subject: p.Name, Audience: jwt.ClaimStrings{s.ServiceName},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
			ExpiresAt: jwt.NewNumericDate(exp), ID: RandomSecret(12),
		},
		Kind:   p.Kind,
		Access: granted,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	t.Header["kid"] = s.kid
	signed, err := t.SignedString(s.key)
	return signed, now, err
}

// VerifyToken checks a bearer token's signature, issuer, audience and
// lifetime, and that its account is still active; it returns the
// principal limited to the token's access.
func (s *Service) VerifyToken(ctx context.Context, raw string) (*Principal, error) {
	s.mu.Lock()
	te, ok := s.tokens[raw]
	s.mu.Unlock()
	var c *Claims
	if ok && time.Now().Before(te.until) {
		c = te.c
	} else {
		c = &Claims{}
		_, err := jwt.ParseWithClaims(raw, c, func(*jwt.Token) (any, error) { return &s.key.PublicKey, nil },
			jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(s.Issuer), jwt.WithAudience(s.ServiceName),
			jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("%w: invalid token: %v", ErrUnauthorized, err)
		}
		until := c.ExpiresAt.Time
		if lim := time.Now().Add(time.Minute); until.After(lim) {
			until = lim
		}
		s.mu.Lock()
		if len(s.tokens) > 10000 {
			clear(s.tokens)
		}
		s.tokens[raw] = tokenEntry{c: c, until: until}
		s.mu.Unlock()
	}
	if c.Access == nil {
		c.Access = []Access{}
	}
	if c.Kind == KindAnonymous {
		return &Principal{Kind: KindAnonymous, Granted: c.Access}, nil
	}
	base, err := s.account(ctx, c.Kind, c.Subject)
	if err != nil {
		return nil, fmt.Errorf("%w: account %s is disabled, expired or deleted", ErrUnauthorized, c.Subject)
	}
	p := *base
	p.Granted = c.Access
	return &p, nil
}

// PublicKeyPEM returns the token verification key.
func (s *Service) PublicKeyPEM() []byte {
	der, _ := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// JWKS returns the token verification key as a JSON Web Key Set, so other
// services (for example a registry mirror) can trust moat's tokens.
func (s *Service) JWKS() []byte {
	size := (s.key.Curve.Params().BitSize + 7) / 8
	pad := func(b []byte) []byte {
		out := make([]byte, size)
		copy(out[size-len(b):], b)
		return out
	}
	pub, _ := s.key.PublicKey.ECDH()
	raw := pub.Bytes() // 0x04 || X || Y
	k := map[string]string{
		"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": s.kid,
		"x": base64.RawURLEncoding.EncodeToString(pad(raw[1 : 1+size])),
		"y": base64.RawURLEncoding.EncodeToString(pad(raw[1+size:])),
	}
	b, _ := json.Marshal(map[string]any{"keys": []any{k}})
	return b
}
