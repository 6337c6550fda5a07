package image

import "testing"

// FuzzParseCAs: a certs.d CA file of any content gives certificates or an
// error, never a panic.
func FuzzParseCAs(f *testing.F) {
	f.Add([]byte("not a certificate"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAK\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cas, err := parseCAs(b)
		if (err == nil) == (len(cas) == 0) {
			t.Fatalf("%d certificates with error %v", len(cas), err)
		}
	})
}
