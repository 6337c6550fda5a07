package signing

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBenchVerifyVsCosign measures whole-process verification of 20 signed
// images in a registry on 127.0.0.1: `moat verify` against `cosign verify`
// with the same key and image digests, each image in its own process, and
// all 20 images in one process. It is a benchmark, not a unit test: it runs
// only with MOAT_BENCH=1 and prints its figures (no thresholds).
//
//	MOAT_BENCH=1 go test -count=1 ./internal/signing -run BenchVerifyVsCosign -v
//
// MOAT_BENCH_REGISTRY=moat (default) uses moat's registry with token auth;
// ggcr uses go-containerregistry's in-memory registry without auth.
func TestBenchVerifyVsCosign(t *testing.T) {
	if os.Getenv("MOAT_BENCH") != "1" {
		t.Skip("benchmark: set MOAT_BENCH=1")
	}
	ctx := context.Background()
	var reg *testReg
	if os.Getenv("MOAT_BENCH_REGISTRY") == "ggcr" {
		reg = ggcrRegistry(t)
	} else {
		reg = moatRegistry(t)
	}
	cs := newCosign(t, reg)
	dir := t.TempDir()
	// MOAT_BENCH_MOAT names another binary taking the same arguments
	// (to compare builds); by default cmd/moat is built.
	moatBin := os.Getenv("MOAT_BENCH_MOAT")
	if moatBin == "" {
		moatBin = filepath.Join(dir, "moat")
		// Built as releases are (README): static, like cosign's own
		// Linux release, which scripts/peers/cosign.sh reproduces.
		build := exec.Command("go", "build", "-trimpath", "-o", moatBin, "../../cmd/moat")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build moat: %v\n%s", err, out)
		}
	}
	_, pub, _ := writeKeyPair(t, dir, "bench", "")
	key, err := LoadPrivateKey(filepath.Join(dir, "bench.key"), []byte("interop-pass"))
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for i := 0; i < 20; i++ {
		ref, dig := pushRandom(t, reg, "proj/bench"+string(rune('a'+i)))
		if _, err := reg.remote().Sign(ctx, ref+":v1", key, SignOptions{}); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref+"@"+dig.String())
	}
	// --plain-http: the registry is known to serve HTTP, so moat does not
	// try HTTPS first; cosign has no such option (--allow-http-registry
	// tries HTTPS first, as moat's --insecure does, measured too).
	moatArgs := func(refs ...string) []string {
		return append([]string{"verify", "--plain-http", "--key", pub}, refs...)
	}
	moatInsecureArgs := func(refs ...string) []string {
		return append([]string{"verify", "--insecure", "--key", pub}, refs...)
	}
	cosignArgs := func(refs ...string) []string {
		return append(cs.verifyArgs("verify", pub), refs...)
	}
	runAll := func(bin string, args func(...string) []string, perImage bool) time.Duration {
		start := time.Now()
		groups := [][]string{refs}
		if perImage {
			groups = nil
			for _, r := range refs {
				groups = append(groups, []string{r})
			}
		}
		for _, g := range groups {
			cmd := exec.Command(bin, args(g...)...)
			cmd.Dir, cmd.Env = cs.dir, cs.env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args(g...), " "), err, out)
			}
		}
		return time.Since(start)
	}
	// Warm the page cache for both binaries once, then take the best of
	// MOAT_BENCH_ROUNDS (default 5) alternating rounds: the figure least
	// disturbed by other work on the machine.
	// MOAT_BENCH_HOLD=FILE writes a shell snippet with the registry, images,
	// key and both tools' command lines to FILE and keeps the registry up
	// for an hour, for measuring by hand (hyperfine, perf, strace).
	if hold := os.Getenv("MOAT_BENCH_HOLD"); hold != "" {
		f, err := os.Create(hold)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "cd %s\n", cs.dir)
		for _, e := range cs.env {
			fmt.Fprintf(f, "export %q\n", e)
		}
		fmt.Fprintf(f, "MOAT=%q\nCOSIGN=%q\nREF=%q\nREFS=%q\nPUB=%q\n", moatBin, cs.bin, refs[0], strings.Join(refs, " "), pub)
		fmt.Fprintf(f, "COSIGNARGS=%q\n", strings.Join(cosignArgs(), " "))
		f.Close()
		time.Sleep(60 * time.Minute)
	}
	runAll(moatBin, moatArgs, false)
	runAll(cs.bin, cosignArgs, false)
	rounds := 5
	if n, err := strconv.Atoi(os.Getenv("MOAT_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	best := func(d *time.Duration, v time.Duration) {
		if *d == 0 || v < *d {
			*d = v
		}
	}
	var mPer, iPer, cPer, mOne, iOne, cOne time.Duration
	for i := 0; i < rounds; i++ {
		best(&mPer, runAll(moatBin, moatArgs, true))
		best(&iPer, runAll(moatBin, moatInsecureArgs, true))
		best(&cPer, runAll(cs.bin, cosignArgs, true))
		best(&mOne, runAll(moatBin, moatArgs, false))
		best(&iOne, runAll(moatBin, moatInsecureArgs, false))
		best(&cOne, runAll(cs.bin, cosignArgs, false))
	}
	t.Logf("registry=%s GOMAXPROCS=%d, 20 images signed by digest, best of %d rounds", reg.name, runtime.GOMAXPROCS(0), rounds)
	ms := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	t.Logf("20 processes (one image each): moat --plain-http %v, moat --insecure %v, cosign %v; cosign/moat = %.2fx (--insecure: %.2fx)",
		ms(mPer), ms(iPer), ms(cPer), float64(cPer)/float64(mPer), float64(cPer)/float64(iPer))
	t.Logf("1 process (20 images):         moat --plain-http %v, moat --insecure %v, cosign %v; cosign/moat = %.2fx (--insecure: %.2fx)",
		ms(mOne), ms(iOne), ms(cOne), float64(cOne)/float64(mOne), float64(cOne)/float64(iOne))
}
