package signing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"
)

func FuzzParsePayload(f *testing.F) {
	good, _ := NewPayload("r.example/app", "sha256:"+hex64, map[string]string{"a": "b"}).Marshal()
	f.Add(good)
	f.Add([]byte(`{"critical":{"type":"cosign container image signature","image":{"docker-manifest-digest":"sha256:zz"}}}`))
	f.Add([]byte(`{"critical":null,"optional":{"n":[1,{"x":2}]}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePayload(data)
		if err != nil {
			if p != nil {
				t.Fatal("payload and error")
			}
			return
		}
		if p.Critical.Type != SimpleSigningType || checkDigest(p.Critical.Image.DockerManifestDigest) != nil {
			t.Fatalf("accepted bad payload %q", data)
		}
		_ = p.Annotations()
	})
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func FuzzParseEnvelope(f *testing.F) {
	k, _ := GenerateKey("")
	env, _ := SignEnvelope(k, InTotoPayloadType, []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"`+hex64+`"}}],"predicateType":"p","predicate":{}}`))
	f.Add(env)
	f.Add([]byte(`{"payloadType":"x","payload":"!!","signatures":[{"sig":"AA=="}]}`))
	f.Add([]byte(`{"payloadType":"x","payload":"e30=","signatures":[]}`))
	f.Add([]byte(`{"payload":"e30="}`))
	keys := []PublicKey{{Key: k.Public(), Fingerprint: Fingerprint(k.Public())}}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, payload, err := ParseEnvelope(data)
		if err != nil {
			return
		}
		if len(e.Signatures) == 0 || e.PayloadType == "" {
			t.Fatal("accepted envelope without signatures or payload type")
		}
		_, _ = VerifyEnvelope(e, payload, keys)
		if st, err := ParseStatement(payload); err == nil && (len(st.Subject) == 0 || st.PredicateType == "") {
			t.Fatal("accepted statement without subject or predicate type")
		}
	})
}

func FuzzParseKeyPEM(f *testing.F) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p8, _ := x509.MarshalPKCS8PrivateKey(ec)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	pub, _ := MarshalPublicKey(ec.Public())
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	f.Add(pub)
	// An encrypted block whose JSON is malformed or has bad KDF parameters
	// (good parameters would make every fuzz input cost a full scrypt).
	f.Add(pem.EncodeToMemory(&pem.Block{Type: SigstorePEMType, Bytes: []byte(`{"kdf":{"name":"scrypt","params":{"N":1,"r":1,"p":1},"salt":"AA=="},"cipher":{"name":"nacl/secretbox","nonce":"AA=="},"ciphertext":"AA=="}`)}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: CosignPEMType, Bytes: []byte(`{"kdf":{}}`)}))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if k, err := ParsePrivateKey(data, []byte("pw")); err == nil {
			if checkKeyType(k.Public()) != nil {
				t.Fatal("accepted unsupported key")
			}
		}
		if k, err := ParsePublicKey(data); err == nil {
			if checkKeyType(k) != nil {
				t.Fatal("accepted unsupported public key")
			}
		}
	})
}

func FuzzParseBundle(f *testing.F) {
	k, _ := GenerateKey("")
	env, _ := SignEnvelope(k, InTotoPayloadType, []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"`+hex64+`"}}],"predicateType":"https://sigstore.dev/cosign/sign/v1"}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"x"}},"dsseEnvelope":` + string(env) + `}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{"signature":"AA=="}}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","dsseEnvelope":null}`))
	f.Add([]byte(`{"mediaType":"text/plain"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		inner, err := ParseBundle(data)
		if err != nil {
			return
		}
		if len(inner) == 0 {
			t.Fatal("empty envelope accepted")
		}
		_, _, _ = ParseEnvelope(inner)
	})
}
