package signing

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// LoadOrCreateServerKey returns a server-held signing key (e.g. the
// registry key that signs scan-on-push attestations). It is stored
// encrypted at rest at path in cosign's format (mode 0600), with its public
// key at path's ".pub" sibling; on first use an ECDSA P-256 key is created.
// The passphrase must not be empty; neither it nor the key is ever logged.
func LoadOrCreateServerKey(path string, passphrase []byte) (key crypto.Signer, created bool, err error) {
	if len(passphrase) == 0 {
		return nil, false, errors.New("server key: an empty passphrase would leave the key unprotected at rest")
	}
	pubPath := strings.TrimSuffix(path, filepath.Ext(path)) + ".pub"
	if data, err := readLimited(path); err == nil {
		if !IsEncryptedPEM(data) {
			return nil, false, fmt.Errorf("server key %s is not encrypted; re-import it with moat key import", path)
		}
		k, err := ParsePrivateKey(data, passphrase)
		if err != nil {
			return nil, false, fmt.Errorf("server key %s: %w", path, err)
		}
		return k, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	k, err := GenerateKey("")
	if err != nil {
		return nil, false, err
	}
	enc, err := EncryptPrivateKey(k, passphrase)
	if err != nil {
		return nil, false, err
	}
	pub, err := MarshalPublicKey(k.Public())
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	// Write-then-rename so a crash never leaves half a key; O_EXCL on the
	// temporary name keeps two starting servers from mixing their writes.
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("server key: %w", err)
	}
	if _, err := f.Write(enc); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, false, err
	}
	f.Close()
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		os.Remove(tmp)
		return nil, false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return nil, false, err
	}
	return k, true, nil
}

// AuditedSigner wraps a server-held key so that every use is reported to
// record (e.g. an audit event "registry key signed ..."), with what was
// signed described by the caller through Purpose.
type AuditedSigner struct {
	crypto.Signer
	Purpose string
	Record  func(purpose, fingerprint string)
}

// Sign implements crypto.Signer and records the use.
func (a *AuditedSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := a.Signer.Sign(rand, digest, opts)
	if err == nil && a.Record != nil {
		a.Record(a.Purpose, Fingerprint(a.Signer.Public()))
	}
	return sig, err
}
