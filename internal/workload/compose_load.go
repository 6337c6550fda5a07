package workload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/interpolation"
	"github.com/compose-spec/compose-go/v2/override"
	"github.com/compose-spec/compose-go/v2/paths"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/transform"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/compose-spec/compose-go/v2/validation"
	"github.com/go-viper/mapstructure/v2"
)

const (
	// maxExtendsDepth bounds a chain of extends (a extends b extends c ...).
	maxExtendsDepth = 32
	// maxExtendsFiles bounds how many other files extends may read.
	maxExtendsFiles = 32
	// maxComposePorts bounds the port mappings port ranges expand to.
	maxComposePorts = 20_000
	// maxMergeWork bounds the work of merging lists (documents, extends):
	// compose's merge compares every item of one list with every item of
	// the other, so two long lists would take minutes.
	maxMergeWork = 5_000_000
)

// composeLoader holds what one DecodeCompose call shares: the environment
// for interpolation and the files read for extends.
type composeLoader struct {
	ctx    context.Context
	env    map[string]string
	name   string // the compose file as the caller named it, for messages
	abs    string
	bases  map[string]map[string]any // extends file (absolute) -> its services
	loaded int
	work   int // merge work done so far, bounded by maxMergeWork
}

// chargeMerge accounts for merging b over a (item comparisons of lists at
// the same place) and fails once the file's merge work passes the bound.
func (l *composeLoader) chargeMerge(a, b any) error {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			return nil
		}
		for k, v := range y {
			if err := l.chargeMerge(x[k], v); err != nil {
				return err
			}
		}
	case []any:
		y, ok := b.([]any)
		if !ok {
			return nil
		}
		l.work += len(x)*len(y) + 1
		if l.work > maxMergeWork {
			return errors.New("merging documents or extends combines lists too long to merge (more than 5 million item comparisons)")
		}
	}
	return nil
}

// loadCompose turns a compose file into a compose-go project. compose-go's
// transforms assume schema-valid input and may panic on other shapes; a
// panic is turned into an error about the file.
func loadCompose(ctx context.Context, name, abs string, data []byte, env map[string]string) (proj *types.Project, skipped []string, err error) {
	defer func() {
		if r := recover(); r != nil {
			proj, skipped, err = nil, nil, fmt.Errorf("invalid compose file (a value has an unexpected type or shape: %v)", r)
		}
	}()
	dir := filepath.Dir(abs)
	l := &composeLoader{ctx: ctx, env: map[string]string{}, name: name, abs: abs, bases: map[string]map[string]any{}}
	for k, v := range env {
		l.env[k] = v
	}
	docs, err := parseComposeYAML(name, data)
	if err != nil {
		return nil, nil, err
	}
	if len(docs) == 0 {
		return nil, nil, errors.New("empty compose file (no services)")
	}
	project := projectNameFrom(dir, docs, l)
	l.env["COMPOSE_PROJECT_NAME"] = project

	var dict map[string]any
	ports := 0
	for i, d := range docs {
		cfg, err := l.interpolate(d.m)
		if err != nil {
			return nil, nil, err
		}
		if ports += countPorts(cfg); ports > maxComposePorts {
			return nil, nil, fmt.Errorf("the port ranges expand to more than %d port mappings", maxComposePorts)
		}
		if inc, ok := cfg["include"]; ok {
			delete(cfg, "include")
			if inc != nil {
				skipped = append(skipped, fmt.Sprintf("%s: include: is not followed, so the services of included files are not checked; check those files separately", name))
			}
		}
		if err := l.applyExtends(cfg, abs, d.tags); err != nil {
			return nil, nil, err
		}
		if i == 0 {
			dict = cfg
		} else {
			for _, t := range d.tags {
				if t.reset {
					deletePath(dict, t.path)
				}
			}
			if err := l.chargeMerge(dict, cfg); err != nil {
				return nil, nil, err
			}
			if dict, err = override.Merge(dict, cfg); err != nil {
				return nil, nil, err
			}
			for _, t := range d.tags {
				if !t.reset {
					if v, ok := getPath(cfg, t.path); ok {
						setPath(dict, t.path, v)
					}
				}
			}
		}
		if dict, err = override.EnforceUnicity(dict); err != nil {
			return nil, nil, err
		}
		if dict, err = transform.Canonical(dict, false); err != nil {
			return nil, nil, err
		}
		if dict, err = override.EnforceUnicity(dict); err != nil {
			return nil, nil, err
		}
	}
	delete(dict, "version")
	if dict, err = transform.SetDefaultValues(dict); err != nil {
		return nil, nil, err
	}
	if err := validation.Validate(dict); err != nil {
		return nil, nil, err
	}
	if err := paths.ResolveRelativePaths(dict, dir, nil); err != nil {
		return nil, nil, err
	}
	if raw, ok := dict["services"]; ok {
		svcs, ok := raw.(map[string]any)
		if !ok {
			return nil, nil, errors.New("services: must be a mapping of service names to services")
		}
		for n, s := range svcs {
			m, ok := s.(map[string]any)
			if !ok {
				return nil, nil, fmt.Errorf("services.%s must be a mapping", n)
			}
			if m["image"] == nil && m["build"] == nil {
				return nil, nil, fmt.Errorf("service %q has neither an image nor a build context", n)
			}
			m["name"] = n
		}
	}
	delete(dict, "name")
	proj = &types.Project{}
	if err := decodeCompose(dict, proj); err != nil {
		return nil, nil, err
	}
	proj.Name, proj.WorkingDir, proj.Environment = project, dir, env
	if err := checkLimits(proj); err != nil {
		return nil, nil, err
	}
	return proj, skipped, nil
}

// checkLimits rejects a service whose short-form limit (cpus, mem_limit,
// pids_limit) and deploy.resources.limits disagree, as compose does: which
// one applies would otherwise be a guess.
func checkLimits(p *types.Project) error {
	names := make([]string, 0, len(p.Services))
	for n := range p.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := p.Services[n]
		if s.Deploy == nil || s.Deploy.Resources.Limits == nil {
			continue
		}
		l := s.Deploy.Resources.Limits
		switch {
		case s.CPUS != 0 && l.NanoCPUs.Value() != s.CPUS:
			return fmt.Errorf("services.%s: cpus and deploy.resources.limits.cpus differ; set one", n)
		case s.MemLimit != 0 && l.MemoryBytes != s.MemLimit:
			return fmt.Errorf("services.%s: mem_limit and deploy.resources.limits.memory differ; set one", n)
		case s.PidsLimit != 0 && l.Pids != s.PidsLimit:
			return fmt.Errorf("services.%s: pids_limit and deploy.resources.limits.pids differ; set one", n)
		}
	}
	return nil
}

// projectNameFrom takes the project name from a top-level name: (the last
// document that sets one, interpolated), else from the file's directory.
func projectNameFrom(dir string, docs []composeDoc, l *composeLoader) string {
	name := ""
	for _, d := range docs {
		if s, ok := d.m["name"].(string); ok && s != "" {
			if v, err := template.Substitute(s, l.lookup); err == nil {
				name = v
			}
		}
	}
	if n := normalizeProjectName(name); n != "" {
		return n
	}
	if n := normalizeProjectName(filepath.Base(dir)); n != "" {
		return n
	}
	return "default"
}

// normalizeProjectName keeps lower-case letters, digits, _ and -, without
// a leading _ or -, as compose does.
func normalizeProjectName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			b.WriteRune(r)
		}
	}
	return strings.TrimLeft(b.String(), "_-")
}

// countPorts estimates how many port mappings the ports: lists expand to
// (a range such as "8000-8100:8000-8100" is one mapping per port).
func countPorts(cfg map[string]any) int {
	services, _ := cfg["services"].(map[string]any)
	n := 0
	for _, s := range services {
		svc, _ := s.(map[string]any)
		list, _ := svc["ports"].([]any)
		for _, p := range list {
			str, ok := p.(string)
			if !ok {
				n++
				continue
			}
			str, _, _ = strings.Cut(str, "/")
			width := 1
			for _, part := range strings.Split(str, ":") {
				lo, hi, ok := strings.Cut(part, "-")
				if !ok {
					continue
				}
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				if err1 == nil && err2 == nil && b-a+1 > width {
					width = b - a + 1
				}
			}
			n += width
		}
	}
	return n
}

func (l *composeLoader) lookup(k string) (string, bool) {
	v, ok := l.env[k]
	return v, ok
}

func (l *composeLoader) interpolate(m map[string]any) (map[string]any, error) {
	return interpolation.Interpolate(m, interpolation.Options{LookupValue: l.lookup, Substitute: template.Substitute})
}

// extendsRef names a service in a file, for cycle detection.
type extendsRef struct{ file, service string }

// applyExtends resolves extends: for every service of cfg (a file's model,
// file being its absolute path). tags are the file's !reset/!override
// marks, applied to the merged services.
func (l *composeLoader) applyExtends(cfg map[string]any, file string, tags []composeTag) error {
	raw, ok := cfg["services"]
	if !ok || raw == nil {
		return nil
	}
	services, ok := raw.(map[string]any)
	if !ok {
		return errors.New("services: must be a mapping of service names to services")
	}
	names := make([]string, 0, len(services))
	for n := range services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := l.extendService(services, file, n, nil, tags); err != nil {
			return err
		}
	}
	return nil
}

// extendService returns service name of services (declared in file) with
// its extends chain merged in, and stores the result back in services.
func (l *composeLoader) extendService(services map[string]any, file, name string, chain []extendsRef, tags []composeTag) (map[string]any, error) {
	raw, ok := services[name]
	if !ok {
		return nil, nil
	}
	if raw == nil {
		return map[string]any{}, nil
	}
	svc, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("services.%s must be a mapping", name)
	}
	ext, ok := svc["extends"]
	if !ok {
		return svc, nil
	}
	if err := l.ctx.Err(); err != nil {
		return nil, err
	}
	var ref, refFile string
	switch e := ext.(type) {
	case string:
		ref = e
	case map[string]any:
		ref, _ = e["service"].(string)
		if f, ok := e["file"]; ok {
			if refFile, ok = f.(string); !ok {
				return nil, fmt.Errorf("services.%s.extends.file must be a string", name)
			}
		}
	}
	if ref == "" {
		return nil, fmt.Errorf("services.%s.extends needs a service name (extends: base or extends: {service: base, file: other.yaml})", name)
	}
	here := extendsRef{file, name}
	chain = append(chain, here)
	if len(chain) > maxExtendsDepth {
		return nil, fmt.Errorf("services.%s: extends chain deeper than %d services", chain[0].service, maxExtendsDepth)
	}
	baseServices, baseFile := services, file
	if refFile != "" {
		if !filepath.IsAbs(refFile) {
			refFile = filepath.Join(filepath.Dir(file), refFile)
		}
		var err error
		if baseServices, err = l.extendsBase(refFile); err != nil {
			return nil, fmt.Errorf("services.%s.extends: %v", name, err)
		}
		baseFile = refFile
	}
	target := extendsRef{baseFile, ref}
	for i, c := range chain {
		if c == target {
			lines := []string{"extends cycle:"}
			for _, c := range append(chain[i:], target) {
				lines = append(lines, fmt.Sprintf("  %s in %s", c.service, l.display(c.file)))
			}
			return nil, errors.New(strings.Join(lines, "\n"))
		}
	}
	if _, ok := baseServices[ref]; !ok {
		return nil, fmt.Errorf("services.%s extends service %q, which %s does not define", name, ref, l.display(baseFile))
	}
	var baseTags []composeTag
	if baseFile == file {
		baseTags = tags
	}
	base, err := l.extendService(baseServices, baseFile, ref, chain, baseTags)
	if err != nil {
		return nil, err
	}
	if err := l.chargeMerge(base, svc); err != nil {
		return nil, err
	}
	merged, err := override.ExtendService(deepCopy(base).(map[string]any), svc)
	if err != nil {
		return nil, fmt.Errorf("services.%s: extending %s: %v", name, ref, err)
	}
	delete(merged, "extends")
	for _, t := range tags {
		if len(t.path) < 3 || t.path[0] != "services" || t.path[1] != name {
			continue
		}
		rel := t.path[2:]
		if t.reset {
			deletePath(merged, rel)
		} else if v, ok := getPath(svc, rel); ok {
			setPath(merged, rel, v)
		}
	}
	services[name] = merged
	return merged, nil
}

// extendsBase reads the services of a file named by extends.file:
// interpolated, canonical and with relative paths resolved against that
// file's directory. Its own extends are resolved by extendService.
func (l *composeLoader) extendsBase(file string) (map[string]any, error) {
	if s, ok := l.bases[file]; ok {
		return s, nil
	}
	if l.loaded >= maxExtendsFiles {
		return nil, fmt.Errorf("extends reads more than %d files", maxExtendsFiles)
	}
	l.loaded++
	fi, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", file, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", file)
	}
	if fi.Size() > maxComposeBytes {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d-byte limit", file, fi.Size(), maxComposeBytes)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	docs, err := parseComposeYAML(file, data)
	if err != nil {
		return nil, err
	}
	var dict map[string]any
	for _, d := range docs {
		cfg, err := l.interpolate(d.m)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", file, err)
		}
		if dict == nil {
			dict = cfg
			continue
		}
		if err := l.chargeMerge(dict, cfg); err != nil {
			return nil, fmt.Errorf("%s: %v", file, err)
		}
		if dict, err = override.Merge(dict, cfg); err != nil {
			return nil, fmt.Errorf("%s: %v", file, err)
		}
	}
	if dict == nil {
		return nil, fmt.Errorf("%s is empty", file)
	}
	if dict, err = transform.Canonical(dict, false); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if err := paths.ResolveRelativePaths(dict, filepath.Dir(file), nil); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	services, ok := dict["services"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s has no services: mapping", file)
	}
	l.bases[file] = services
	return services, nil
}

func (l *composeLoader) display(file string) string {
	if file == l.abs {
		return l.name
	}
	return file
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, e := range t {
			s[i] = deepCopy(e)
		}
		return s
	}
	return v
}

func getPath(m map[string]any, p []string) (any, bool) {
	var cur any = m
	for _, k := range p {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func setPath(m map[string]any, p []string, v any) {
	if len(p) == 0 {
		return
	}
	parent, ok := getPath(m, p[:len(p)-1])
	if pm, isMap := parent.(map[string]any); ok && isMap {
		pm[p[len(p)-1]] = v
	}
}

func deletePath(m map[string]any, p []string) {
	if len(p) == 0 {
		return
	}
	parent, ok := getPath(m, p[:len(p)-1])
	if pm, isMap := parent.(map[string]any); ok && isMap {
		delete(pm, p[len(p)-1])
	}
}

// decodeCompose decodes the canonical model into compose-go types. Types
// that define DecodeMapstructure (sizes, CPU counts, string-or-list
// fields, ...) decode themselves; interpolated strings are cast to the
// booleans and numbers their fields hold.
func decodeCompose(src map[string]any, dst *types.Project) error {
	d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook: composeDecodeHook,
		Result:     dst,
		TagName:    "yaml",
		Squash:     true,
	})
	if err != nil {
		return err
	}
	return d.Decode(src)
}

func composeDecodeHook(from, to reflect.Value) (any, error) {
	if !from.IsValid() || !to.IsValid() {
		return nil, nil
	}
	var dec interface{ DecodeMapstructure(any) error }
	switch {
	case to.Kind() == reflect.Pointer && to.Type().Implements(mapDecoderType):
		if to.IsNil() {
			if !to.CanSet() {
				break
			}
			to.Set(reflect.New(to.Type().Elem()))
		}
		dec = to.Interface().(interface{ DecodeMapstructure(any) error })
	case to.CanAddr() && to.Addr().Type().Implements(mapDecoderType):
		dec = to.Addr().Interface().(interface{ DecodeMapstructure(any) error })
	}
	if dec != nil {
		if err := dec.DecodeMapstructure(from.Interface()); err != nil {
			return nil, err
		}
		return to.Interface(), nil
	}
	if from.Kind() == reflect.String {
		s := strings.TrimSpace(from.String())
		switch to.Kind() {
		case reflect.Bool:
			switch strings.ToLower(s) {
			case "true", "y", "yes", "on":
				return true, nil
			case "false", "n", "no", "off":
				return false, nil
			}
			return nil, fmt.Errorf("%q is not a boolean", s)
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return strconv.ParseInt(s, 0, 64)
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return strconv.ParseUint(s, 0, 64)
		case reflect.Float32, reflect.Float64:
			return strconv.ParseFloat(s, 64)
		}
	}
	if to.Kind() == reflect.String {
		switch from.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return strconv.FormatInt(from.Int(), 10), nil
		}
	}
	return from.Interface(), nil
}
