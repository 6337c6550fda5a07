// Package signing holds moat's chain of custody: signing keys in the
// formats cosign reads and writes, cosign "simple signing" image
// signatures, DSSE envelopes carrying in-toto statements, and their
// storage in and retrieval from OCI registries (both the cosign
// sha256-<hex>.sig/.att tags and OCI 1.1 referrers).
//
// Verification is offline: a signature is trusted when it verifies with one
// of the given public keys; no transparency log or certificate authority is
// consulted.
package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
)

// PEM block types. cosign writes SigstorePEMType (older versions
// CosignPEMType); both hold a JSON document produced by go-securesystemslib's
// encrypted package (scrypt key derivation, nacl/secretbox) whose plaintext
// is a PKCS#8 private key.
const (
	SigstorePEMType = "ENCRYPTED SIGSTORE PRIVATE KEY"
	CosignPEMType   = "ENCRYPTED COSIGN PRIVATE KEY"
	PublicKeyPEM    = "PUBLIC KEY"
)

// Algorithm names accepted by GenerateKey.
const (
	AlgECDSAP256 = "ecdsa-p256"
	AlgEd25519   = "ed25519"
)

// Limits on key material read from files.
const maxKeyFileSize = 64 << 10

// GenerateKey returns a new private key: ECDSA P-256 (alg "" or
// "ecdsa-p256") or Ed25519 ("ed25519").
func GenerateKey(alg string) (crypto.Signer, error) {
	switch strings.ToLower(alg) {
	case "", AlgECDSAP256, "ecdsa", "p256", "p-256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgEd25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	default:
		return nil, fmt.Errorf("unknown key algorithm %q (want %s or %s)", alg, AlgECDSAP256, AlgEd25519)
	}
}

// EncryptPrivateKey encodes key as PKCS#8, encrypts it with the passphrase
// and returns the cosign-compatible "ENCRYPTED SIGSTORE PRIVATE KEY" PEM.
func EncryptPrivateKey(key crypto.Signer, passphrase []byte) ([]byte, error) {
	if err := checkKeyType(key.Public()); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	enc, err := encrypted.Encrypt(der, passphrase)
	if err != nil {
		return nil, fmt.Errorf("encrypt private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: SigstorePEMType, Bytes: enc}), nil
}

// MarshalPublicKey returns the PKIX "PUBLIC KEY" PEM of pub.
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: PublicKeyPEM, Bytes: der}), nil
}

// ErrPassphrase is returned when an encrypted key does not decrypt.
var ErrPassphrase = errors.New("wrong passphrase, or the encrypted key is corrupt")

// ParsePrivateKey reads a private key PEM: cosign/sigstore encrypted keys
// (decrypted with passphrase), PKCS#8 "PRIVATE KEY" (ECDSA, Ed25519, RSA),
// "EC PRIVATE KEY" (SEC 1) and "RSA PRIVATE KEY" (PKCS#1). Unencrypted
// formats ignore the passphrase. Only the first PEM block is used.
func ParsePrivateKey(data, passphrase []byte) (crypto.Signer, error) {
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("private key: file larger than %d bytes", maxKeyFileSize)
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		return nil, errors.New("private key: no PEM block found")
	}
	var key any
	var err error
	switch blk.Type {
	case SigstorePEMType, CosignPEMType:
		der, derr := encrypted.Decrypt(blk.Bytes, passphrase)
		if derr != nil {
			if strings.Contains(derr.Error(), "decryption failed") {
				return nil, ErrPassphrase
			}
			return nil, fmt.Errorf("private key: %s block: %w", blk.Type, derr)
		}
		key, err = x509.ParsePKCS8PrivateKey(der)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("private key: PKCS#8 \"ENCRYPTED PRIVATE KEY\" is not supported; decrypt it first (openssl pkcs8) or use a cosign key")
	default:
		return nil, fmt.Errorf("private key: unsupported PEM block type %q", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("private key: %s block: %w", blk.Type, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key: unsupported key type %T", key)
	}
	if err := checkKeyType(s.Public()); err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	return s, nil
}

// checkKeyType accepts the key types moat signs and verifies with.
func checkKeyType(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too small (minimum 2048)", k.N.BitLen())
		}
		return nil
	default:
		return fmt.Errorf("unsupported key type %T (want ECDSA, Ed25519 or RSA)", pub)
	}
}

// ParsePublicKey reads a "PUBLIC KEY" (PKIX) PEM, an "RSA PUBLIC KEY"
// (PKCS#1) PEM, or a "CERTIFICATE" PEM (its public key is used).
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("public key: file larger than %d bytes", maxKeyFileSize)
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		return nil, errors.New("public key: no PEM block found")
	}
	var pub crypto.PublicKey
	var err error
	switch blk.Type {
	case PublicKeyPEM:
		pub, err = x509.ParsePKIXPublicKey(blk.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(blk.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
			pub = c.PublicKey
		}
	default:
		if strings.Contains(blk.Type, "PRIVATE KEY") {
			return nil, fmt.Errorf("public key: got a private key (%s); pass the .pub file", blk.Type)
		}
		return nil, fmt.Errorf("public key: unsupported PEM block type %q", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	if err := checkKeyType(pub); err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return pub, nil
}

// Fingerprint is "SHA256:" and the hex SHA-256 of the key's PKIX DER
// encoding (the same digest go-securesystemslib uses as a DSSE key id).
func Fingerprint(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "unknown"
	}
	sum := sha256.Sum256(der)
	return "SHA256:" + hex.EncodeToString(sum[:])
}

// PublicKey is a trusted verification key and where it came from.
type PublicKey struct {
	Key         crypto.PublicKey
	Source      string // file the key was read from
	Fingerprint string
}

// LoadPublicKeys reads trusted keys from spec: a PEM file, a directory (every
// *.pub and *.pem file in it that holds a public key), or a comma-separated
// list of either.
func LoadPublicKeys(spec string) ([]PublicKey, error) {
	var out []PublicKey
	seen := map[string]bool{}
	add := func(path string) error {
		data, err := readLimited(path)
		if err != nil {
			return err
		}
		pub, err := ParsePublicKey(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		fp := Fingerprint(pub)
		if !seen[fp] {
			seen[fp] = true
			out = append(out, PublicKey{Key: pub, Source: path, Fingerprint: fp})
		}
		return nil
	}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		fi, err := os.Stat(item)
		if err != nil {
			return nil, fmt.Errorf("trusted keys: %w", err)
		}
		if !fi.IsDir() {
			if err := add(item); err != nil {
				return nil, err
			}
			continue
		}
		ents, err := os.ReadDir(item)
		if err != nil {
			return nil, fmt.Errorf("trusted keys: %w", err)
		}
		names := []string{}
		for _, e := range ents {
			n := e.Name()
			if e.Type().IsRegular() && (strings.HasSuffix(n, ".pub") || strings.HasSuffix(n, ".pem")) {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		n0 := len(out)
		for _, n := range names {
			p := filepath.Join(item, n)
			data, err := readLimited(p)
			if err != nil {
				return nil, err
			}
			if blk, _ := pem.Decode(data); blk != nil && strings.Contains(blk.Type, "PRIVATE") {
				continue // a private key next to its .pub: not a trust anchor
			}
			if err := add(p); err != nil {
				return nil, err
			}
		}
		if len(out) == n0 {
			return nil, fmt.Errorf("trusted keys: no public key (*.pub, *.pem) in directory %s", item)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("trusted keys: none given")
	}
	return out, nil
}

// LoadPrivateKey reads and decrypts a private key file.
func LoadPrivateKey(path string, passphrase []byte) (crypto.Signer, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivateKey(data, passphrase)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// IsEncryptedPEM reports whether data is a cosign/sigstore encrypted key.
func IsEncryptedPEM(data []byte) bool {
	blk, _ := pem.Decode(data)
	return blk != nil && (blk.Type == SigstorePEMType || blk.Type == CosignPEMType)
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes, not a key file", path, maxKeyFileSize)
	}
	return data, nil
}
