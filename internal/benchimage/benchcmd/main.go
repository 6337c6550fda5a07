// Command benchcmd generates the benchmark image and compares the package
// sets found by moat and syft in it (used by scripts/bench-scan.sh).
//
//	benchcmd generate [-scale 1] [-seed 1] [-dir DIR] [-oci]
//	    prints the docker archive path, then writes expected counts to stderr
//	benchcmd compare -moat moat.json -syft syft.json [-expected expected.json]
//	    prints per-ecosystem counts and every package syft finds that moat
//	    misses (and the reverse); exit status 1 when moat misses any
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/moat-dev/moat/internal/benchimage"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "generate":
		generate(os.Args[2:])
	case "compare":
		os.Exit(compare(os.Args[2:]))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: benchcmd generate [-scale S] [-seed N] [-dir DIR] [-oci] | compare -moat FILE -syft FILE [-expected FILE]")
	os.Exit(2)
}

func generate(args []string) {
	fs := flag.NewFlagSet("generate", flag.ExitOnError)
	scale := fs.Float64("scale", 1, "size factor (1 = ~1 GB, ~60k files)")
	seed := fs.Int64("seed", 1, "random seed")
	dir := fs.String("dir", benchimage.DefaultDir(), "cache directory")
	oci := fs.Bool("oci", false, "also write an OCI image layout")
	fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	im, err := benchimage.Generate(ctx, benchimage.Options{Scale: *scale, Seed: *seed, Dir: *dir, OCILayout: *oci})
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcmd:", err)
		os.Exit(1)
	}
	e := im.Expected
	fmt.Println(im.Archive)
	if im.Layout != "" {
		fmt.Println(im.Layout)
	}
	st, _ := os.Stat(im.Archive)
	var size int64
	if st != nil {
		size = st.Size()
	}
	fmt.Fprintf(os.Stderr, "benchimage: %s (%s): %d layers, %d files, %.1f MB of files, %.1f MB of tar, %.1f MB compressed, ready in %s\n",
		filepath.Base(filepath.Dir(im.Archive)), im.Archive, e.Layers, e.Files, float64(e.Bytes)/1e6, float64(e.TarBytes)/1e6, float64(size)/1e6, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(os.Stderr, "benchimage: expected packages: %v (Go binaries: %d, npm deleted by whiteout: %d)\n", e.Counts(), len(e.GoBinaries), len(e.NpmDeleted))
}
