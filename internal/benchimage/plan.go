package benchimage

import (
	"fmt"
	"math"
	"math/rand"
	"path"
	"sort"
	"strings"
)

// entry is one path a layer writes.
type entry struct {
	path string // absolute
	kind byte   // 'f' regular file, 'l' symlink, 'w' whiteout of path
	mode int64
	size int64    // for pool content
	pool poolKind // for pool content
	data []byte   // literal content (nil: pool content)
	link string
}

type layerPlan struct {
	createdBy string
	entries   []entry
	bytes     int64
	files     int
}

type planner struct {
	r     *rand.Rand
	seed  int64
	scale float64
	pl    *pools
	nm    *names
	bins  []builtBinary

	layers []*layerPlan
	exp    *Expected
}

func newPlanner(scale float64, seed int64, bins []builtBinary) *planner {
	p := &planner{
		r:     rand.New(rand.NewSource(seed)),
		seed:  seed,
		scale: scale,
		pl:    newPools(seed ^ 0x5eed),
		bins:  bins,
		exp:   &Expected{GeneratorVersion: generatorVersion, Scale: scale, Seed: seed},
	}
	p.nm = newNames(p.r)
	p.layers = []*layerPlan{
		{createdBy: "/bin/sh -c #(nop) ADD file:6b5a8d0e4c1f2a9d37e1c0b8f4d2a6e3 in / "},
		{createdBy: "RUN /bin/sh -c apt-get update && apt-get install -y --no-install-recommends python3 openjdk-17-jre-headless && pip install -r /tmp/requirements.txt # buildkit"},
		{createdBy: "COPY . /app # buildkit"},
		{createdBy: "RUN /bin/sh -c apt-get install -y --no-install-recommends extra-tools && npm prune --omit=dev # buildkit"},
	}
	return p
}

// count scales a full-scale count, keeping a minimum.
func (p *planner) count(full int, min int) int {
	n := int(math.Round(float64(full) * p.scale))
	if n < min {
		n = min
	}
	return n
}

func (p *planner) file(layer int, pth string, mode int64, size int64, kind poolKind) {
	l := p.layers[layer]
	l.entries = append(l.entries, entry{path: pth, kind: 'f', mode: mode, size: size, pool: kind})
	l.bytes += size
	l.files++
}

func (p *planner) data(layer int, pth string, mode int64, b []byte) {
	l := p.layers[layer]
	l.entries = append(l.entries, entry{path: pth, kind: 'f', mode: mode, size: int64(len(b)), data: b})
	l.bytes += int64(len(b))
	l.files++
}

func (p *planner) symlink(layer int, pth, target string) {
	l := p.layers[layer]
	l.entries = append(l.entries, entry{path: pth, kind: 'l', mode: 0o777, link: target})
}

func (p *planner) whiteout(layer int, pth string) {
	l := p.layers[layer]
	l.entries = append(l.entries, entry{path: path.Join(path.Dir(pth), ".wh."+path.Base(pth)), kind: 'w', mode: 0o644})
	p.exp.DeletedFiles = append(p.exp.DeletedFiles, pth)
}

func (p *planner) totalBytes() (n int64, files int) {
	for _, l := range p.layers {
		n += l.bytes
		files += l.files
	}
	return
}

// plan lays out every layer.
func (p *planner) plan() {
	p.planOS()
	deb := p.planDpkg()
	p.planPython()
	p.planJava()
	p.planGo()
	npm := p.planNpm()
	p.planTop(deb, npm)
	p.planFiller()
}

func (p *planner) planOS() {
	osRelease := `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
`
	p.data(0, "/usr/lib/os-release", 0o644, []byte(osRelease))
	p.symlink(0, "/etc/os-release", "../usr/lib/os-release")
	p.data(0, "/etc/debian_version", 0o644, []byte("12.8\n"))
	p.data(0, "/etc/hostname", 0o644, []byte("localhost\n"))
	p.data(0, "/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"))
}

// ---------------------------------------------------------------- dpkg

type debPkg struct {
	DebPackage
	section, multiArch, maint, desc string
	source                          string // the Source: field value ("" if absent)
	files                           []string
	dirs                            []string
}

var sections = []string{"libs", "utils", "admin", "net", "perl", "python", "devel", "text", "misc", "fonts", "shells", "interpreters"}
var langs = []string{"de", "fr", "es", "it", "ja", "pt_BR", "ru", "zh_CN", "pl", "nl", "sv", "cs"}

func (p *planner) debVersion() (ver, srcVer string) {
	r := p.r
	up := fmt.Sprintf("%d.%d", r.Intn(12), r.Intn(40))
	if r.Intn(2) == 0 {
		up += fmt.Sprintf(".%d", r.Intn(20))
	}
	if r.Intn(10) == 0 {
		up = fmt.Sprintf("%d:%s", 1+r.Intn(3), up)
	}
	rev := fmt.Sprintf("-%d", 1+r.Intn(6))
	switch x := r.Intn(10); {
	case x < 2:
		rev += fmt.Sprintf("+deb12u%d", 1+r.Intn(4))
	case x < 3:
		rev += "~bpo12+1"
	}
	ver = up + rev
	srcVer = ver
	if r.Intn(8) == 0 {
		ver += "+b1" // binary NMU: the source keeps the version without +b1
	}
	return ver, srcVer
}

// newDeb invents one package with its files.
func (p *planner) newDeb(layer int) *debPkg {
	r := p.r
	base := p.nm.next(1)
	d := &debPkg{}
	d.Layer = layer
	d.maint = fmt.Sprintf("Debian %s Maintainers <pkg-%s@lists.debian.org>", strings.Title(base), base) //nolint:staticcheck // ASCII names
	d.section = sections[r.Intn(len(sections))]
	d.Arch = "amd64"
	ver, srcVer := p.debVersion()
	d.Version = ver
	kind := r.Intn(10)
	switch {
	case kind < 4: // shared library
		d.Name = fmt.Sprintf("lib%s%d", base, r.Intn(8))
		d.section = "libs"
		d.multiArch = "same"
		d.source = base
	case kind < 5:
		d.Name = base + "-common"
		d.Arch = "all"
		d.multiArch = "foreign"
		d.source = base
	case kind < 6:
		d.Name = "python3-" + base
		d.section = "python"
		d.Arch = "all"
		d.source = "python-" + base
	default:
		d.Name = base
		if r.Intn(5) == 0 {
			d.source = base + "-tools"
		}
	}
	d.SourceName, d.SourceVersion = d.Name, d.Version
	if d.source != "" {
		d.SourceName, d.SourceVersion = d.source, srcVer
		if srcVer != ver {
			d.source += " (" + srcVer + ")"
		}
	} else if srcVer != ver {
		d.source = d.Name + " (" + srcVer + ")"
		d.SourceVersion = srcVer
	}
	d.desc = strings.TrimSpace(string(p.pl.slice(poolText, p.seed, "desc/"+d.Name, 40+r.Intn(40))))
	d.desc = strings.Map(func(c rune) rune {
		if c == '\n' {
			return ' '
		}
		return c
	}, d.desc)

	dirs := map[string]bool{}
	add := func(f string, mode int64, size int64, kind poolKind) {
		p.file(layer, f, mode, size, kind)
		d.files = append(d.files, f)
		for dd := path.Dir(f); dd != "/"; dd = path.Dir(dd) {
			dirs[dd] = true
		}
	}
	doc := "/usr/share/doc/" + d.Name
	p.data(layer, doc+"/copyright", 0o644, p.copyright(d))
	d.files = append(d.files, doc+"/copyright")
	dirs[doc], dirs["/usr/share/doc"], dirs["/usr/share"], dirs["/usr"] = true, true, true, true
	add(doc+"/changelog.Debian.gz", 0o644, logNormal(r, 3000, 1.0, 200, 200<<10), poolRand)

	n := int(logNormal(r, 12, 0.9, 1, 150))
	for i := 0; i < n; i++ {
		w := p.nm.next(1)
		switch x := r.Intn(20); {
		case x < 4 && d.section == "libs":
			so := fmt.Sprintf("/usr/lib/x86_64-linux-gnu/lib%s.so.%d.%d.0", w, r.Intn(4), r.Intn(10))
			add(so, 0o644, logNormal(r, 40<<10, 1.2, 4<<10, 16<<20), poolELF)
			link := so[:strings.LastIndex(so[:strings.LastIndex(so, ".")], ".")]
			p.symlink(layer, link, path.Base(so))
			d.files = append(d.files, link)
		case x < 7:
			add("/usr/bin/"+w, 0o755, logNormal(r, 24<<10, 1.1, 2<<10, 12<<20), poolELF)
		case x < 9:
			add(fmt.Sprintf("/usr/share/man/man%d/%s.%d.gz", 1+r.Intn(8), w, 1+r.Intn(8)), 0o644, logNormal(r, 2500, 0.8, 300, 100<<10), poolRand)
		case x < 11:
			add(fmt.Sprintf("/usr/share/locale/%s/LC_MESSAGES/%s.mo", langs[r.Intn(len(langs))], d.Name), 0o644, logNormal(r, 20<<10, 1.0, 1<<10, 1<<20), poolBin)
		case x < 12:
			add(fmt.Sprintf("/usr/lib/x86_64-linux-gnu/%s/%s.so", base, w), 0o644, logNormal(r, 30<<10, 1.1, 2<<10, 8<<20), poolELF)
		case x < 13:
			add(fmt.Sprintf("/usr/sbin/%s", w), 0o755, logNormal(r, 24<<10, 1.1, 2<<10, 8<<20), poolELF)
		default:
			ext := []string{".conf", ".txt", ".xml", ".pm", ".py", ".sh", ".dat", ".json"}[r.Intn(8)]
			kind := poolText
			if ext == ".dat" {
				kind = poolBin
			}
			add(fmt.Sprintf("/usr/share/%s/%s%s", base, w, ext), 0o644, logNormal(r, 5<<10, 1.3, 64, 4<<20), kind)
		}
	}
	for dd := range dirs {
		d.dirs = append(d.dirs, dd)
	}
	sort.Strings(d.dirs)
	return d
}

func (p *planner) copyright(d *debPkg) []byte {
	lic := []string{"GPL-2+", "LGPL-2.1+", "BSD-3-clause", "MIT", "Expat", "Apache-2.0", "GPL-3+"}[p.r.Intn(7)]
	var b strings.Builder
	fmt.Fprintf(&b, "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: %s\nSource: https://example.org/%s\n\n", d.SourceName, d.SourceName)
	fmt.Fprintf(&b, "Files: *\nCopyright: 2001-2023 %s\nLicense: %s\n\n", d.maint, lic)
	fmt.Fprintf(&b, "License: %s\n", lic)
	for _, line := range strings.Split(string(p.pl.slice(poolText, p.seed, "copyright/"+d.Name, 800+p.r.Intn(4000))), "\n") {
		b.WriteString(" " + strings.TrimSpace(line) + "\n")
	}
	return []byte(b.String())
}

func (d *debPkg) paragraph() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Package: %s\nStatus: install ok installed\nPriority: optional\nSection: %s\nInstalled-Size: %d\nMaintainer: %s\nArchitecture: %s\n",
		d.Name, d.section, 16+len(d.files)*37, d.maint, d.Arch)
	if d.multiArch != "" {
		fmt.Fprintf(&b, "Multi-Arch: %s\n", d.multiArch)
	}
	if d.source != "" {
		fmt.Fprintf(&b, "Source: %s\n", d.source)
	}
	fmt.Fprintf(&b, "Version: %s\n", d.Version)
	if d.section == "libs" {
		b.WriteString("Depends: libc6 (>= 2.34)\n")
	}
	fmt.Fprintf(&b, "Description: %s\n", firstWords(d.desc, 6))
	fmt.Fprintf(&b, " %s\n .\n %s\n", d.desc, firstWords(d.desc, 4))
	fmt.Fprintf(&b, "Homepage: https://example.org/%s\n\n", d.SourceName)
	return b.String()
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	if len(f) > n {
		f = f[:n]
	}
	return strings.Join(f, " ")
}

func (d *debPkg) infoName() string {
	if d.multiArch == "same" {
		return d.Name + ":amd64"
	}
	return d.Name
}

// infoFiles writes /var/lib/dpkg/info/<pkg>.list, .md5sums and some
// maintainer scripts.
func (p *planner) infoFiles(layer int, d *debPkg) {
	info := "/var/lib/dpkg/info/" + d.infoName()
	var list, sums strings.Builder
	list.WriteString("/.\n")
	for _, dd := range d.dirs {
		list.WriteString(dd + "\n")
	}
	files := append([]string(nil), d.files...)
	sort.Strings(files)
	for _, f := range files {
		list.WriteString(f + "\n")
		fmt.Fprintf(&sums, "%016x%016x  %s\n", pathHash(p.seed, f), pathHash(p.seed+1, f), f[1:])
	}
	p.data(layer, info+".list", 0o644, []byte(list.String()))
	p.data(layer, info+".md5sums", 0o644, []byte(sums.String()))
	if p.r.Intn(3) == 0 {
		script := fmt.Sprintf("#!/bin/sh\nset -e\n# Automatically added by dh_installsystemd\nif [ \"$1\" = \"configure\" ]; then\n\tldconfig\nfi\n# %s\n", d.Name)
		p.data(layer, info+".postinst", 0o755, []byte(script))
	}
	if d.section == "libs" {
		p.data(layer, info+".triggers", 0o644, []byte("activate-noawait ldconfig\n"))
		p.data(layer, info+".shlibs", 0o644, []byte(fmt.Sprintf("%s 0 %s (>= %s)\n", strings.TrimPrefix(d.Name, "lib"), d.Name, d.Version)))
	}
}

func statusFile(pkgs []*debPkg) []byte {
	sorted := append([]*debPkg(nil), pkgs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var b strings.Builder
	for _, d := range sorted {
		b.WriteString(d.paragraph())
	}
	return []byte(b.String())
}

func (p *planner) planDpkg() []*debPkg {
	n := p.count(480, 20)
	var pkgs []*debPkg
	for i := 0; i < n; i++ {
		d := p.newDeb(0)
		p.infoFiles(0, d)
		pkgs = append(pkgs, d)
	}
	p.data(0, "/var/lib/dpkg/status", 0o644, statusFile(pkgs))
	p.data(0, "/var/lib/dpkg/status-old", 0o644, statusFile(pkgs[:len(pkgs)-1]))
	p.data(0, "/var/lib/dpkg/diversions", 0o644, []byte("/bin/sh\n/bin/sh.distrib\ndash\n"))
	return pkgs
}

// ---------------------------------------------------------------- python

func (p *planner) pyName() string {
	r := p.r
	w := p.nm.next(1 + r.Intn(2))
	switch x := r.Intn(20); {
	case x < 3:
		w = strings.Title(w) //nolint:staticcheck // ASCII names
	case x < 5:
		w = strings.ReplaceAll(w, "-", "_")
		if !strings.Contains(w, "_") {
			w += "_py"
		}
	case x < 6:
		w = "zope." + strings.ReplaceAll(w, "-", "")
	}
	return w
}

func (p *planner) pyVersion() string {
	r := p.r
	v := fmt.Sprintf("%d.%d.%d", r.Intn(6), r.Intn(30), r.Intn(15))
	switch r.Intn(15) {
	case 0:
		v += ".post1"
	case 1:
		v = fmt.Sprintf("%d.%d", 2000+r.Intn(25), 1+r.Intn(12))
	}
	return v
}

func (p *planner) planPython() {
	const site = "/usr/local/lib/python3.11/site-packages"
	r := p.r
	n := p.count(300, 10)
	for i := 0; i < n; i++ {
		name, ver := p.pyName(), p.pyVersion()
		mod := strings.ToLower(strings.NewReplacer("-", "_", ".", "_").Replace(name))
		var record []string
		addPy := func(rel string, size int64, kind poolKind) {
			p.file(1, site+"/"+rel, 0o644, size, kind)
			record = append(record, fmt.Sprintf("%s,sha256=%016x%016x,%d", rel, pathHash(p.seed, rel), pathHash(p.seed+7, rel), size))
		}
		k := int(logNormal(r, 7, 0.9, 1, 120))
		addPy(mod+"/__init__.py", logNormal(r, 1500, 1, 0, 64<<10), poolText)
		for j := 0; j < k; j++ {
			w := p.nm.next(1)
			addPy(fmt.Sprintf("%s/%s.py", mod, w), logNormal(r, 8<<10, 1.1, 100, 1<<20), poolText)
			addPy(fmt.Sprintf("%s/__pycache__/%s.cpython-311.pyc", mod, w), logNormal(r, 7<<10, 1.1, 100, 1<<20), poolBin)
		}
		meta := fmt.Sprintf("Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: %s\nHome-page: https://github.com/example/%s\nAuthor: %s maintainers\nLicense: %s\nRequires-Python: >=3.8\nClassifier: Programming Language :: Python :: 3\n\n%s\n",
			name, ver, firstWords(string(p.pl.slice(poolText, p.seed, "py/"+name, 200)), 8), mod, name,
			[]string{"MIT", "BSD-3-Clause", "Apache-2.0", "PSF-2.0"}[r.Intn(4)],
			p.pl.slice(poolText, p.seed, "pyreadme/"+name, int(logNormal(r, 3000, 1, 100, 64<<10))))
		switch x := r.Intn(20); {
		case x == 0: // egg-info file
			f := fmt.Sprintf("%s-%s-py3.11.egg-info", strings.ReplaceAll(name, "-", "_"), ver)
			p.data(1, site+"/"+f, 0o644, []byte(meta))
			p.exp.Python = append(p.exp.Python, PyPackage{Name: name, Version: ver, Path: site + "/" + f})
		case x == 1: // egg-info directory
			dir := fmt.Sprintf("%s/%s-%s-py3.11.egg-info", site, strings.ReplaceAll(name, "-", "_"), ver)
			p.data(1, dir+"/PKG-INFO", 0o644, []byte(meta))
			p.data(1, dir+"/SOURCES.txt", 0o644, []byte(strings.Join(record, "\n")+"\n"))
			p.data(1, dir+"/top_level.txt", 0o644, []byte(mod+"\n"))
			p.data(1, dir+"/dependency_links.txt", 0o644, []byte("\n"))
			p.exp.Python = append(p.exp.Python, PyPackage{Name: name, Version: ver, Path: dir + "/PKG-INFO"})
		default:
			di := fmt.Sprintf("%s-%s.dist-info", strings.ReplaceAll(name, "-", "_"), ver)
			dir := site + "/" + di
			p.data(1, dir+"/METADATA", 0o644, []byte(meta))
			p.data(1, dir+"/WHEEL", 0o644, []byte("Wheel-Version: 1.0\nGenerator: bdist_wheel (0.41.2)\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
			p.data(1, dir+"/INSTALLER", 0o644, []byte("pip\n"))
			p.data(1, dir+"/top_level.txt", 0o644, []byte(mod+"\n"))
			for _, f := range []string{"METADATA", "WHEEL", "INSTALLER", "top_level.txt"} {
				record = append(record, fmt.Sprintf("%s/%s,sha256=%016x,0", di, f, pathHash(p.seed, di+f)))
			}
			if r.Intn(8) == 0 {
				w := p.nm.next(1)
				script := fmt.Sprintf("#!/usr/local/bin/python3.11\nimport sys\nfrom %s.cli import main\nif __name__ == '__main__':\n    sys.exit(main())\n", mod)
				p.data(1, "/usr/local/bin/"+w, 0o755, []byte(script))
				p.data(1, dir+"/entry_points.txt", 0o644, []byte(fmt.Sprintf("[console_scripts]\n%s = %s.cli:main\n", w, mod)))
				record = append(record, fmt.Sprintf("../../../bin/%s,sha256=%016x,%d", w, pathHash(p.seed, w), len(script)))
			}
			record = append(record, di+"/RECORD,,")
			p.data(1, dir+"/RECORD", 0o644, []byte(strings.Join(record, "\n")+"\n"))
			p.exp.Python = append(p.exp.Python, PyPackage{Name: name, Version: ver, Path: dir + "/METADATA"})
		}
	}
}

// ---------------------------------------------------------------- java

func (p *planner) mavenCoords() (group, artifact, version string) {
	r := p.r
	tld := []string{"org", "com", "io", "net"}[r.Intn(4)]
	group = tld + "." + randWord(r, 2)
	if r.Intn(2) == 0 {
		group += "." + randWord(r, 2)
	}
	artifact = p.nm.next(1 + r.Intn(2))
	version = fmt.Sprintf("%d.%d.%d", r.Intn(8), r.Intn(20), r.Intn(30))
	switch r.Intn(12) {
	case 0:
		version += ".Final"
	case 1:
		version += "-jre"
	}
	return
}

func (p *planner) planJava() {
	r := p.r
	n := p.count(200, 6)
	fat := p.count(3, 1)
	nested := p.count(25, 3)
	for i := 0; i < n; i++ {
		g, a, v := p.mavenCoords()
		layer := 1
		var dir string
		switch x := r.Intn(10); {
		case x < 3:
			dir = "/usr/share/java"
		case x < 7:
			dir = "/opt/" + []string{"tomcat", "kafka", "elastic", "jetty"}[r.Intn(4)] + "/lib"
		default:
			layer, dir = 2, "/app/lib"
		}
		jp := fmt.Sprintf("%s/%s-%s.jar", dir, a, v)
		if i < fat {
			layer, jp = 2, fmt.Sprintf("/app/%s-%s.jar", a, v)
			var inner []jarSpec
			for j := 0; j < nested; j++ {
				ng, na, nv := p.mavenCoords()
				inner = append(inner, jarSpec{group: ng, artifact: na, version: nv, classes: int(logNormal(r, 25, 1, 2, 300))})
				p.exp.Maven = append(p.exp.Maven, MavenPackage{Group: ng, Artifact: na, Version: nv, Path: fmt.Sprintf("%s!/BOOT-INF/lib/%s-%s.jar", jp, na, nv)})
			}
			spec := jarSpec{group: g, artifact: a, version: v, classes: int(logNormal(r, 40, 1, 2, 300)), nested: inner, boot: true}
			p.data(layer, jp, 0o644, p.jar(spec))
			p.exp.Maven = append(p.exp.Maven, MavenPackage{Group: g, Artifact: a, Version: v, Path: jp})
			continue
		}
		spec := jarSpec{group: g, artifact: a, version: v, classes: int(logNormal(r, 30, 1.2, 1, 800)), manifestOnly: r.Intn(25) == 0}
		p.data(layer, jp, 0o644, p.jar(spec))
		mp := MavenPackage{Group: g, Artifact: a, Version: v, Path: jp, ManifestOnly: spec.manifestOnly}
		if spec.manifestOnly {
			mp.Group = ""
		}
		p.exp.Maven = append(p.exp.Maven, mp)
	}
}

// ---------------------------------------------------------------- go

func (p *planner) planGo() {
	n := p.count(20, 2)
	for i := 0; i < n; i++ {
		b := p.bins[i%len(p.bins)]
		layer, dir := 1, "/usr/local/bin"
		if i%5 >= 3 {
			layer, dir = 2, "/app/bin"
		}
		bp := dir + "/" + p.nm.next(1) + "d"
		pad := p.pl.slice(poolBin, p.seed, bp, 512+i*1031)
		content := make([]byte, 0, len(b.data)+len(pad))
		content = append(append(content, b.data...), pad...)
		p.data(layer, bp, 0o755, content)
		gb := b.info
		gb.Path = bp
		p.exp.GoBinaries = append(p.exp.GoBinaries, gb)
	}
}

// ---------------------------------------------------------------- npm

type npmPkg struct {
	NpmPackage
	rel      string // "node_modules/a/node_modules/b"
	license  string
	children []*npmPkg
	parent   *npmPkg
	deleted  bool
}

func (p *planner) npmVersion(used map[string]bool) string {
	r := p.r
	for {
		v := fmt.Sprintf("%d.%d.%d", r.Intn(10), r.Intn(25), r.Intn(30))
		if r.Intn(30) == 0 {
			v += fmt.Sprintf("-beta.%d", r.Intn(5))
		}
		if !used[v] {
			used[v] = true
			return v
		}
	}
}

func (p *planner) planNpm() []*npmPkg {
	r := p.r
	total := p.count(1500, 30)
	nScoped := total / 10
	nNested := total * 17 / 100
	nTop := total - nScoped - nNested
	versions := map[string]map[string]bool{}
	mk := func(name string) *npmPkg {
		if versions[name] == nil {
			versions[name] = map[string]bool{}
		}
		v := p.npmVersion(versions[name])
		return &npmPkg{NpmPackage: NpmPackage{Name: name, Version: v, Dev: r.Intn(12) == 0},
			license: []string{"MIT", "MIT", "MIT", "ISC", "Apache-2.0", "BSD-3-Clause", "BSD-2-Clause"}[r.Intn(7)]}
	}
	var all, top []*npmPkg
	for i := 0; i < nTop; i++ {
		q := mk(p.nm.next(1 + r.Intn(2)))
		q.rel = "node_modules/" + q.Name
		top = append(top, q)
	}
	scopes := make([]string, max(1, nScoped/15))
	for i := range scopes {
		scopes[i] = "@" + p.nm.next(1)
	}
	for i := 0; i < nScoped; i++ {
		q := mk(scopes[r.Intn(len(scopes))] + "/" + p.nm.next(1))
		q.rel = "node_modules/" + q.Name
		top = append(top, q)
	}
	all = append(all, top...)
	var nestedPkgs []*npmPkg
	for i := 0; i < nNested; i++ {
		var name string
		if r.Intn(10) < 7 {
			name = top[r.Intn(len(top))].Name // another version of a hoisted package
		} else {
			name = p.nm.next(1)
		}
		parent := top[r.Intn(len(top))]
		if len(nestedPkgs) > 0 && r.Intn(10) == 0 {
			parent = nestedPkgs[r.Intn(len(nestedPkgs))]
		}
		if parent.Name == name || (parent.parent != nil && parent.parent.Name == name) {
			name = p.nm.next(1)
		}
		dup := false
		for _, c := range parent.children {
			if c.Name == name {
				dup = true
			}
		}
		if dup {
			name = p.nm.next(1)
		}
		q := mk(name)
		q.parent = parent
		q.rel = parent.rel + "/node_modules/" + name
		parent.children = append(parent.children, q)
		nestedPkgs = append(nestedPkgs, q)
		all = append(all, q)
	}
	for _, q := range all {
		p.npmFiles(q)
	}
	// The application itself.
	rootDeps := map[string]string{}
	for _, q := range top {
		if !q.Dev {
			rootDeps[q.Name] = "^" + q.Version
		}
	}
	p.exp.NpmRoot = NpmPackage{Name: "moat-bench-app", Version: "1.4.2", Path: "/app/package.json"}
	p.data(2, "/app/package.json", 0o644, mustJSON(map[string]any{
		"name": "moat-bench-app", "version": "1.4.2", "private": true, "main": "dist/server.js",
		"scripts": map[string]string{"start": "node dist/server.js"}, "dependencies": rootDeps,
	}))
	p.data(2, "/app/package-lock.json", 0o644, packageLock(all, rootDeps))
	return all
}

func (p *planner) npmFiles(q *npmPkg) {
	r := p.r
	dir := "/app/" + q.rel
	deps := map[string]string{}
	for _, c := range q.children {
		deps[c.Name] = "^" + c.Version
	}
	pj := map[string]any{
		"name": q.Name, "version": q.Version,
		"description": firstWords(string(p.pl.slice(poolText, p.seed, "npm/"+dir, 120)), 8),
		"main":        "index.js", "license": q.license,
		"author":     fmt.Sprintf("%s <%s@example.com>", randWord(r, 2), randWord(r, 2)),
		"repository": map[string]string{"type": "git", "url": "git+https://github.com/example/" + strings.TrimPrefix(q.Name, "@") + ".git"},
		"keywords":   []string{randWord(r, 2), randWord(r, 2)},
	}
	if len(deps) > 0 {
		pj["dependencies"] = deps
	}
	p.data(2, dir+"/package.json", 0o644, mustJSON(pj))
	q.Path = dir + "/package.json"
	p.file(2, dir+"/README.md", 0o644, logNormal(r, 4<<10, 1, 200, 200<<10), poolText)
	p.file(2, dir+"/LICENSE", 0o644, 1000+int64(r.Intn(600)), poolText)
	p.file(2, dir+"/index.js", 0o644, logNormal(r, 2<<10, 1.2, 40, 500<<10), poolText)
	k := int(logNormal(r, 3, 1.0, 0, 80))
	for i := 0; i < k; i++ {
		p.file(2, fmt.Sprintf("%s/lib/%s.js", dir, p.nm.next(1)), 0o644, logNormal(r, 5<<10, 1.2, 60, 2<<20), poolText)
	}
	if r.Intn(5) == 0 {
		p.file(2, fmt.Sprintf("%s/dist/%s.min.js", dir, strings.TrimPrefix(path.Base(q.Name), "@")), 0o644, logNormal(r, 60<<10, 1, 1<<10, 4<<20), poolText)
	}
	if r.Intn(3) == 0 {
		p.file(2, dir+"/index.d.ts", 0o644, logNormal(r, 3<<10, 1, 60, 200<<10), poolText)
	}
	if r.Intn(15) == 0 {
		p.data(2, dir+"/bin/cli.js", 0o755, []byte("#!/usr/bin/env node\n'use strict';\nrequire('../index.js').main(process.argv.slice(2));\n"))
	}
}

func packageLock(all []*npmPkg, rootDeps map[string]string) []byte {
	pkgs := map[string]any{
		"": map[string]any{"name": "moat-bench-app", "version": "1.4.2", "dependencies": rootDeps},
	}
	for _, q := range all {
		if q.deleted {
			continue
		}
		e := map[string]any{
			"version":   q.Version,
			"resolved":  fmt.Sprintf("https://registry.npmjs.org/%s/-/%s-%s.tgz", q.Name, path.Base(q.Name), q.Version),
			"integrity": fmt.Sprintf("sha512-%016x%016x==", pathHash(1, q.rel), pathHash(2, q.Version)),
			"license":   q.license,
		}
		if q.Dev {
			e["dev"] = true
		}
		if len(q.children) > 0 {
			deps := map[string]string{}
			for _, c := range q.children {
				deps[c.Name] = "^" + c.Version
			}
			e["dependencies"] = deps
		}
		pkgs[q.rel] = e
	}
	return mustJSON(map[string]any{"name": "moat-bench-app", "version": "1.4.2", "lockfileVersion": 3, "requires": true, "packages": pkgs})
}

// ---------------------------------------------------------------- top layer

// planTop writes the top layer: a dpkg status rewrite adding packages, npm
// packages deleted with whiteouts (and the lock file rewritten to match),
// and a deleted dpkg file.
func (p *planner) planTop(deb []*debPkg, npm []*npmPkg) {
	r := p.r
	added := p.count(20, 5)
	all := append([]*debPkg(nil), deb...)
	for i := 0; i < added; i++ {
		d := p.newDeb(3)
		p.infoFiles(3, d)
		all = append(all, d)
	}
	p.data(3, "/var/lib/dpkg/status", 0o644, statusFile(all))
	p.data(3, "/var/lib/dpkg/status-old", 0o644, statusFile(deb))
	for _, d := range all {
		p.exp.Dpkg = append(p.exp.Dpkg, d.DebPackage)
	}
	// One dpkg-related file deleted: the md5sums of a base package.
	p.whiteout(3, "/var/lib/dpkg/info/"+deb[r.Intn(len(deb))].infoName()+".md5sums")

	// npm: delete top-level packages (with their nested dependencies) and
	// one scoped package.
	nDel := p.count(10, 2)
	var unscoped, scoped []*npmPkg
	for _, q := range npm {
		if q.parent != nil {
			continue
		}
		if strings.HasPrefix(q.Name, "@") {
			scoped = append(scoped, q)
		} else if len(q.children) > 0 || len(unscoped) < nDel {
			unscoped = append(unscoped, q)
		}
	}
	var del []*npmPkg
	for i := 0; i < nDel && len(unscoped) > 0; i++ {
		// prefer packages with nested dependencies
		j := r.Intn(len(unscoped))
		for k := 0; k < 5 && len(unscoped[j].children) == 0; k++ {
			j = r.Intn(len(unscoped))
		}
		del = append(del, unscoped[j])
		unscoped = append(unscoped[:j], unscoped[j+1:]...)
	}
	if len(scoped) > 0 {
		del = append(del, scoped[r.Intn(len(scoped))])
	}
	var mark func(q *npmPkg)
	mark = func(q *npmPkg) {
		q.deleted = true
		for _, c := range q.children {
			mark(c)
		}
	}
	for _, q := range del {
		mark(q)
		p.whiteout(3, "/app/"+q.rel)
	}
	rootDeps := map[string]string{}
	for _, q := range npm {
		if q.deleted {
			p.exp.NpmDeleted = append(p.exp.NpmDeleted, q.NpmPackage)
		} else {
			p.exp.Npm = append(p.exp.Npm, q.NpmPackage)
			if q.parent == nil && !q.Dev {
				rootDeps[q.Name] = "^" + q.Version
			}
		}
	}
	p.data(3, "/app/package-lock.json", 0o644, packageLock(npm, rootDeps))
}

// ---------------------------------------------------------------- filler

type fillerFamily struct {
	layer   int
	weight  float64
	dirs    func(p *planner) string
	ext     []string
	kind    poolKind
	mode    int64
	median  float64
	sigma   float64
	maxSize int64
}

var fillerFamilies = []fillerFamily{
	{0, 14, func(p *planner) string {
		return fmt.Sprintf("/usr/share/locale/%s/LC_MESSAGES", langs[p.r.Intn(len(langs))])
	}, []string{".mo"}, poolBin, 0o644, 12 << 10, 1.2, 4 << 20},
	{0, 8, func(p *planner) string {
		return fmt.Sprintf("/usr/share/icons/hicolor/%dx%d/apps", 16<<p.r.Intn(5), 16<<p.r.Intn(5))
	}, []string{".png"}, poolRand, 0o644, 3 << 10, 1.0, 1 << 20},
	{0, 10, func(p *planner) string { return "/usr/share/perl5/" + strings.Title(randWord(p.r, 2)) }, //nolint:staticcheck
		[]string{".pm"}, poolText, 0o644, 8 << 10, 1.2, 2 << 20},
	{0, 8, func(p *planner) string { return "/usr/lib/x86_64-linux-gnu/" + randWord(p.r, 2) },
		[]string{".so"}, poolELF, 0o644, 60 << 10, 1.6, 48 << 20},
	{0, 8, func(p *planner) string { return "/usr/share/zoneinfo/" + strings.Title(randWord(p.r, 3)) }, //nolint:staticcheck
		[]string{""}, poolBin, 0o644, 2 << 10, 0.7, 64 << 10},
	{1, 12, func(p *planner) string { return "/usr/local/lib/python3.11/" + randWord(p.r, 2) },
		[]string{".py", ".py", ".pyc"}, poolText, 0o644, 10 << 10, 1.3, 4 << 20},
	{1, 6, func(p *planner) string { return "/usr/lib/jvm/java-17-openjdk-amd64/lib/" + randWord(p.r, 2) },
		[]string{".so", ".jsa", ".dat"}, poolBin, 0o644, 100 << 10, 1.8, 48 << 20},
	{2, 12, func(p *planner) string { return "/app/dist/assets/" + randWord(p.r, 2) },
		[]string{".js", ".css", ".map", ".js"}, poolText, 0o644, 8 << 10, 1.5, 16 << 20},
	{2, 4, func(p *planner) string { return "/app/public/img/" + randWord(p.r, 2) },
		[]string{".png", ".jpg", ".webp"}, poolRand, 0o644, 30 << 10, 1.3, 8 << 20},
	{2, 6, func(p *planner) string { return "/app/src/" + randWord(p.r, 2) + "/" + randWord(p.r, 2) },
		[]string{".ts", ".tsx", ".json"}, poolText, 0o644, 4 << 10, 1.0, 512 << 10},
	{3, 3, func(p *planner) string { return "/var/cache/" + randWord(p.r, 2) },
		[]string{".bin", ".cache"}, poolRand, 0o644, 20 << 10, 1.5, 16 << 20},
	{3, 2, func(p *planner) string { return "/usr/local/share/" + randWord(p.r, 2) },
		[]string{".txt", ".xml"}, poolText, 0o644, 6 << 10, 1.2, 2 << 20},
}

// planFiller adds files until the image reaches its target file count and
// size: 60,000 files and 1 GiB at full scale, scaled.
func (p *planner) planFiller() {
	r := p.r
	targetFiles := int(60000 * p.scale)
	targetBytes := int64(float64(1<<30) * p.scale)
	have, files := p.totalBytes()
	nf := targetFiles - files
	budget := targetBytes - have
	if nf <= 0 || budget <= 0 {
		return
	}
	// A few big files first (a full-scale image has some), then many
	// files of each family's typical size, scaled to the remaining budget.
	type pending struct {
		fam  *fillerFamily
		dir  string
		size float64
	}
	var total float64
	var wsum float64
	for _, f := range fillerFamilies {
		wsum += f.weight
	}
	list := make([]pending, 0, nf)
	dirs := map[*fillerFamily][]string{}
	for i := 0; i < nf; i++ {
		x := r.Float64() * wsum
		var fam *fillerFamily
		for j := range fillerFamilies {
			x -= fillerFamilies[j].weight
			if x < 0 || j == len(fillerFamilies)-1 {
				fam = &fillerFamilies[j]
				break
			}
		}
		ds := dirs[fam]
		if len(ds) == 0 || r.Intn(15) == 0 {
			dirs[fam] = append(ds, fam.dirs(p))
			ds = dirs[fam]
		}
		s := float64(logNormal(r, fam.median, fam.sigma, 16, fam.maxSize))
		list = append(list, pending{fam: fam, dir: ds[r.Intn(len(ds))], size: s})
		total += s
	}
	k := float64(budget) / total
	seen := map[string]bool{}
	for _, f := range list {
		size := int64(f.size * k)
		if size > f.fam.maxSize {
			size = f.fam.maxSize
		}
		var name string
		for {
			name = f.dir + "/" + randWord(r, 2+r.Intn(2)) + f.fam.ext[r.Intn(len(f.fam.ext))]
			if !seen[name] {
				seen[name] = true
				break
			}
		}
		kind := f.fam.kind
		if strings.HasSuffix(name, ".pyc") {
			kind = poolBin
		}
		p.file(f.fam.layer, name, f.fam.mode, size, kind)
	}
}
