package benchimage

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// goProgram is a small real Go program built at generation time against
// pinned module versions, so the image holds genuine Go binaries with
// build information.
type goProgram struct {
	module string
	deps   [][2]string // module, version
	source string
	strip  bool
}

var goPrograms = []goProgram{
	{
		module: "example.com/moatbench/svc-api",
		deps:   [][2]string{{"github.com/google/uuid", "v1.6.0"}, {"github.com/pkg/errors", "v0.9.1"}},
		source: `package main

import (
	"fmt"
	"os"

	"github.com/google/uuid"
	"github.com/pkg/errors"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Println(errors.Wrap(errors.New(os.Args[1]), uuid.NewString()))
	}
}
`,
	},
	{
		module: "example.com/moatbench/svc-worker",
		deps:   [][2]string{{"github.com/dustin/go-humanize", "v1.0.1"}, {"github.com/spf13/pflag", "v1.0.10"}},
		source: `package main

import (
	"fmt"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

func main() {
	n := pflag.Uint64("bytes", 1<<20, "a size")
	pflag.Parse()
	fmt.Println(humanize.Bytes(*n))
}
`,
		strip: true,
	},
}

// builtBinary is one compiled program and what its build information says.
type builtBinary struct {
	data []byte
	info GoBinary // Path left empty
}

// buildGoBinaries compiles goPrograms for linux/amd64 in throwaway modules
// under tmp. It needs the go command and the module proxy (or a module cache
// holding the pinned versions).
func buildGoBinaries(ctx context.Context, tmp string) ([]builtBinary, error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("building the Go binaries of the benchmark image needs the go command: %w", err)
	}
	var out []builtBinary
	for i, p := range goPrograms {
		dir := filepath.Join(tmp, fmt.Sprintf("goprog%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		var mod bytes.Buffer
		fmt.Fprintf(&mod, "module %s\n\ngo 1.22\n\nrequire (\n", p.module)
		for _, d := range p.deps {
			fmt.Fprintf(&mod, "\t%s %s\n", d[0], d[1])
		}
		mod.WriteString(")\n")
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), mod.Bytes(), 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(p.source), 0o644); err != nil {
			return nil, err
		}
		env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod -buildvcs=false", "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		run := func(args ...string) error {
			cmd := exec.CommandContext(ctx, goCmd, args...)
			cmd.Dir = dir
			cmd.Env = env
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go %v in %s: %v\n%s", args, dir, err, b)
			}
			return nil
		}
		if err := run("mod", "tidy"); err != nil {
			return nil, err
		}
		args := []string{"build", "-trimpath", "-o", "prog"}
		if p.strip {
			args = append(args, "-ldflags=-s -w")
		}
		if err := run(append(args, ".")...); err != nil {
			return nil, err
		}
		bin := filepath.Join(dir, "prog")
		bi, err := buildinfo.ReadFile(bin)
		if err != nil {
			return nil, fmt.Errorf("built Go binary has no build information: %w", err)
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		g := GoBinary{Main: bi.Main.Path, GoVersion: bi.GoVersion}
		for _, d := range bi.Deps {
			m := GoModule{Path: d.Path, Version: d.Version}
			if d.Replace != nil {
				m = GoModule{Path: d.Replace.Path, Version: d.Replace.Version}
			}
			g.Deps = append(g.Deps, m)
		}
		out = append(out, builtBinary{data: data, info: g})
	}
	return out, nil
}
