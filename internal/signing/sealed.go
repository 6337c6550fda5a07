package signing

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MasterKeyEnv names the environment variable that may hold the server's
// master key (base64 of 32 bytes) instead of a file.
const MasterKeyEnv = "MOAT_MASTER_KEY"

// MasterKey is the server's key-encryption key: the keys the server holds
// (its registry signing key, the projects' trusted keys) are stored in the
// metadata database sealed with it (AES-256-GCM). It never leaves memory
// and is never logged: its String method only names it by ID.
type MasterKey struct {
	key [32]byte
	id  [8]byte
}

// NewMasterKey wraps 32 bytes of key material.
func NewMasterKey(b []byte) (*MasterKey, error) {
	if len(b) != 32 {
		return nil, fmt.Errorf("master key: %d bytes, want 32 (AES-256)", len(b))
	}
	mk := &MasterKey{}
	copy(mk.key[:], b)
	h := hmac.New(sha256.New, mk.key[:])
	h.Write([]byte("moat master key id v1"))
	copy(mk.id[:], h.Sum(nil))
	return mk, nil
}

// ID names the key (a keyed hash of it, safe to show and log): a sealed
// value records the ID of the key that sealed it.
func (m *MasterKey) ID() string { return hex.EncodeToString(m.id[:]) }

// String never reveals key material.
func (m *MasterKey) String() string { return "master key " + m.ID() }

// ParseMasterKey decodes a master key written as base64 (standard or URL
// alphabet, padding optional) of 32 bytes, surrounding space ignored.
func ParseMasterKey(text string) (*MasterKey, error) {
	s := strings.TrimSpace(text)
	var b []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("master key: not base64 (create one with: head -c 32 /dev/urandom | base64)")
	}
	return NewMasterKey(b)
}

// LoadOrCreateMasterKey returns the master key from envValue (the value of
// MOAT_MASTER_KEY) when it is not empty, else from the file at path; when
// the file does not exist a new random key is written there (mode 0600,
// created reports it). A key file readable by group or others is refused.
func LoadOrCreateMasterKey(path, envValue string) (mk *MasterKey, created bool, err error) {
	if strings.TrimSpace(envValue) != "" {
		mk, err := ParseMasterKey(envValue)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", MasterKeyEnv, err)
		}
		return mk, false, nil
	}
	if path == "" {
		return nil, false, fmt.Errorf("no master key: give --master-key-file or set %s", MasterKeyEnv)
	}
	mk, err = LoadMasterKeyFile(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return mk, false, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	// O_EXCL: two servers starting at once never overwrite each other's
	// key; the loser reads the winner's.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return LoadOrCreateMasterKey(path, "")
	}
	if err != nil {
		return nil, false, fmt.Errorf("master key: %w", err)
	}
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(b[:]) + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("master key: %w", err)
	}
	mk, err = NewMasterKey(b[:])
	return mk, true, err
}

// LoadMasterKeyFile reads an existing master key file (never creating
// one); like LoadOrCreateMasterKey it refuses a file that group or others
// can read. A missing file is an error that wraps os.ErrNotExist.
func LoadMasterKeyFile(path string) (*MasterKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("master key file %s has mode %v: it must be readable by its owner only (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	mk, err := ParseMasterKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return mk, nil
}

// A sealed value is: sealedMagic, the 8-byte ID of the master key, a
// 12-byte GCM nonce, then the AES-256-GCM ciphertext and tag. The header
// is authenticated together with the caller's associated data (which binds
// the value to its row, e.g. project and key name).
var sealedMagic = []byte("MKS1")

const (
	sealedHeader  = 4 + 8 + 12
	sealedTagSize = 16
	// MaxSealedSize bounds a sealed value (keys are small).
	MaxSealedSize = 64 << 10
)

// ErrWrongMasterKey means a value was sealed under another master key.
var ErrWrongMasterKey = errors.New("sealed with another master key")

// ErrSealedTampered means a sealed value does not authenticate: it was
// altered, or it belongs to another row.
var ErrSealedTampered = errors.New("sealed value does not authenticate: altered, or moved from another row")

// SealedEnvelope is a parsed sealed value.
type SealedEnvelope struct {
	KeyID      string
	Nonce      []byte
	Ciphertext []byte // with the GCM tag
}

// ParseSealed decodes the envelope of a sealed value without decrypting it.
func ParseSealed(data []byte) (*SealedEnvelope, error) {
	if len(data) > MaxSealedSize {
		return nil, fmt.Errorf("sealed value: %d bytes, more than %d", len(data), MaxSealedSize)
	}
	if len(data) < sealedHeader+sealedTagSize {
		return nil, fmt.Errorf("sealed value: %d bytes, too short (at least %d)", len(data), sealedHeader+sealedTagSize)
	}
	if !bytes.Equal(data[:4], sealedMagic) {
		return nil, errors.New("sealed value: unknown format (no MKS1 header)")
	}
	return &SealedEnvelope{KeyID: hex.EncodeToString(data[4:12]), Nonce: data[12:sealedHeader], Ciphertext: data[sealedHeader:]}, nil
}

func (m *MasterKey) aead() (cipher.AEAD, error) {
	b, err := aes.NewCipher(m.key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Seal encrypts plaintext, binding it to aad (which Open must be given
// again).
func (m *MasterKey) Seal(plaintext, aad []byte) ([]byte, error) {
	if len(plaintext) > MaxSealedSize-sealedHeader-sealedTagSize {
		return nil, fmt.Errorf("seal: %d bytes is too large", len(plaintext))
	}
	g, err := m.aead()
	if err != nil {
		return nil, err
	}
	out := make([]byte, sealedHeader, sealedHeader+len(plaintext)+sealedTagSize)
	copy(out, sealedMagic)
	copy(out[4:], m.id[:])
	if _, err := rand.Read(out[12:sealedHeader]); err != nil {
		return nil, err
	}
	return g.Seal(out, out[12:sealedHeader], plaintext, sealedAAD(out[:sealedHeader], aad)), nil
}

// Open decrypts a sealed value made by Seal with the same aad.
func (m *MasterKey) Open(sealed, aad []byte) ([]byte, error) {
	env, err := ParseSealed(sealed)
	if err != nil {
		return nil, err
	}
	if env.KeyID != m.ID() {
		return nil, fmt.Errorf("%w: the value names master key %s, this server has %s (start it with the master key it used before: --master-key-file or %s; to move to this key, also give the old one with --previous-master-key-file)",
			ErrWrongMasterKey, env.KeyID, m.ID(), MasterKeyEnv)
	}
	g, err := m.aead()
	if err != nil {
		return nil, err
	}
	pt, err := g.Open(nil, env.Nonce, env.Ciphertext, sealedAAD(sealed[:sealedHeader], aad))
	if err != nil {
		return nil, ErrSealedTampered
	}
	return pt, nil
}

func sealedAAD(header, aad []byte) []byte {
	out := make([]byte, 0, len(header)+len(aad))
	return append(append(out, header...), aad...)
}

// RowAAD is the associated data that binds a sealed key to its row: the
// kind of key and the parts of the row's identity, each length-prefixed so
// that no two rows share it.
func RowAAD(kind string, parts ...string) []byte {
	var b bytes.Buffer
	for _, p := range append([]string{"moat sealed key v1", kind}, parts...) {
		fmt.Fprintf(&b, "%d:%s;", len(p), p)
	}
	return b.Bytes()
}

// SealPrivateKey seals key (PKCS#8) under the master key.
func (m *MasterKey) SealPrivateKey(key crypto.Signer, aad []byte) ([]byte, error) {
	if err := checkKeyType(key.Public()); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return m.Seal(der, aad)
}

// OpenPrivateKey opens a private key sealed by SealPrivateKey.
func (m *MasterKey) OpenPrivateKey(sealed, aad []byte) (crypto.Signer, error) {
	der, err := m.Open(sealed, aad)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("sealed private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("sealed private key: unsupported key type %T", k)
	}
	if err := checkKeyType(s.Public()); err != nil {
		return nil, fmt.Errorf("sealed private key: %w", err)
	}
	return s, nil
}

// Reseal returns sealed re-encrypted under m when it was sealed under one
// of previous (changed is true), or sealed itself when it is already under
// m. A value under a master key that is neither is ErrWrongMasterKey; a
// value that does not authenticate under its key is ErrSealedTampered.
func (m *MasterKey) Reseal(sealed, aad []byte, previous []*MasterKey) (out []byte, changed bool, err error) {
	env, err := ParseSealed(sealed)
	if err != nil {
		return nil, false, err
	}
	if env.KeyID == m.ID() {
		if _, err := m.Open(sealed, aad); err != nil {
			return nil, false, err
		}
		return sealed, false, nil
	}
	for _, p := range previous {
		if p.ID() != env.KeyID {
			continue
		}
		pt, err := p.Open(sealed, aad)
		if err != nil {
			return nil, false, err
		}
		out, err := m.Seal(pt, aad)
		clear(pt)
		if err != nil {
			return nil, false, err
		}
		return out, true, nil
	}
	return nil, false, fmt.Errorf("%w: the value names master key %s, which is neither the current key %s nor a previous key given",
		ErrWrongMasterKey, env.KeyID, m.ID())
}
