package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
)

// SignMessage signs msg the way cosign (sigstore's signature package)
// does: ECDSA over the SHA-256 digest (ASN.1 DER signature; SHA-384/512
// for P-384/P-521 keys would not verify in cosign, so moat uses SHA-256
// for every curve, as cosign does), Ed25519 over the message itself, RSA
// PKCS#1 v1.5 over the SHA-256 digest.
func SignMessage(key crypto.Signer, msg []byte) ([]byte, error) {
	switch key.Public().(type) {
	case ed25519.PublicKey:
		return key.Sign(rand.Reader, msg, crypto.Hash(0))
	case *ecdsa.PublicKey, *rsa.PublicKey:
		sum := sha256.Sum256(msg)
		return key.Sign(rand.Reader, sum[:], crypto.SHA256)
	default:
		return nil, fmt.Errorf("unsupported key type %T", key.Public())
	}
}

// ErrBadSignature means a signature does not verify with a key.
var ErrBadSignature = errors.New("signature does not verify")

// VerifyMessage checks sig over msg with pub (see SignMessage).
func VerifyMessage(pub crypto.PublicKey, msg, sig []byte) error {
	if len(sig) == 0 || len(sig) > 1024 {
		return fmt.Errorf("%w: signature of %d bytes", ErrBadSignature, len(sig))
	}
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if ed25519.Verify(k, msg, sig) {
			return nil
		}
		// Ed25519ph (pre-hashed with SHA-512), which some sigstore
		// clients use for Ed25519 keys.
		sum := sha512.Sum512(msg)
		if ed25519.VerifyWithOptions(k, sum[:], sig, &ed25519.Options{Hash: crypto.SHA512}) == nil {
			return nil
		}
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(msg)
		if ecdsa.VerifyASN1(k, sum[:], sig) {
			return nil
		}
	case *rsa.PublicKey:
		sum := sha256.Sum256(msg)
		if rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig) == nil {
			return nil
		}
		if rsa.VerifyPSS(k, crypto.SHA256, sum[:], sig, nil) == nil {
			return nil
		}
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	return ErrBadSignature
}
