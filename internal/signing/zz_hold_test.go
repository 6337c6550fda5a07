package signing

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestZZHold(t *testing.T) {
	if os.Getenv("MOAT_HOLD") == "" {
		t.Skip()
	}
	ctx := context.Background()
	reg := ggcrRegistry(t)
	if os.Getenv("MOAT_HOLD") == "moat" {
		reg = moatRegistry(t)
	}
	dir := "/tmp/hold"
	os.MkdirAll(dir, 0o755)
	_, _, _ = writeKeyPair(t, dir, "bench", "")
	key, _ := LoadPrivateKey(filepath.Join(dir, "bench.key"), []byte("interop-pass"))
	var refs []string
	for i := 0; i < 20; i++ {
		ref, dig := pushRandom(t, reg, "proj/bench"+string(rune('a'+i)))
		reg.remote().Sign(ctx, ref+":v1", key, SignOptions{})
		refs = append(refs, ref+"@"+dig.String())
	}
	os.WriteFile(filepath.Join(dir, "refs"), []byte(strings.Join(refs, "\n")+"\n"), 0o644)
	time.Sleep(5 * time.Minute)
}
