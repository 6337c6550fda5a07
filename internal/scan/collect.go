package scan

import (
	"sort"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/distro"
	"github.com/moat-dev/moat/internal/image"
)

// collect keeps the packages of files visible in the squashed filesystem,
// attributes each to the layer that introduced it, and fills ecosystem and
// purl.
func collect(im *image.Image, fs *image.FS, layers []*image.LayerResult, rel distro.Release) []catalog.Package {
	d := catalog.Distro{Ecosystem: rel.OSVEcosystem(), Namespace: rel.PurlNamespace(), Qualifier: rel.PurlDistro()}
	if rel.ID == "" {
		d = catalog.Distro{}
	}
	wrote := wrotePaths(layers)
	var out []catalog.Package
	for li, l := range layers {
		paths := make([]string, 0, len(l.Parsed))
		for p := range l.Parsed {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for _, p := range paths {
			pf := l.Parsed[p]
			e, layer, ok := fs.Lookup(p)
			if !ok || layer != l.Index || (e.Kind != image.KindFile && e.Kind != image.KindHardlink) {
				continue // overwritten or deleted by a later layer
			}
			seen := map[string]bool{}
			for _, pkg := range pf.Packages {
				k := pkg.Key()
				if seen[k] {
					continue
				}
				seen[k] = true
				for i := range pkg.Locations {
					pkg.Locations[i].Layer = l.Index
					pkg.Locations[i].LayerDiffID = diffID(im, l.Index)
				}
				if len(pkg.Locations) == 0 {
					pkg.Locations = []catalog.Location{{Path: p, Layer: l.Index, LayerDiffID: diffID(im, l.Index)}}
				}
				intro := introducedIn(layers, wrote, li, p, k)
				pkg.Layer = intro
				pkg.LayerDiffID = diffID(im, intro)
				if intro >= 0 && intro < len(im.Layers) {
					pkg.CreatedBy = im.Layers[intro].CreatedBy
				}
				catalog.Finalize(&pkg, d)
				out = append(out, pkg)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.Locations[0].Path < b.Locations[0].Path
	})
	return out
}

// introducedIn walks down from the layer at position li through the lower
// layers that wrote the same file, while they already held the package, and
// returns the lowest such layer's index: a database rewritten by every
// layer (dpkg status) attributes each package to the layer that installed it.
func introducedIn(layers []*image.LayerResult, wrote []map[string]bool, li int, p, key string) int {
	best := layers[li].Index
	for m := li - 1; m >= 0; m-- {
		if deletes(layers[m+1], p) {
			break
		}
		pf, parsedHere := layers[m].Parsed[p]
		if !parsedHere {
			if wrote[m][p] {
				break // the file existed there without any package
			}
			continue
		}
		has := false
		for i := range pf.Packages {
			if pf.Packages[i].Key() == key {
				has = true
				break
			}
		}
		if !has {
			break
		}
		best = layers[m].Index
	}
	return best
}

func deletes(l *image.LayerResult, p string) bool { return image.DeletedIn(l, p) }

// wrotePaths tells, for each layer, which of the catalogued paths (in any
// layer) it wrote, so introducedIn can tell "not touched" from "rewritten
// without the package".
func wrotePaths(layers []*image.LayerResult) []map[string]bool {
	parsed := map[string]bool{}
	for _, l := range layers {
		for p := range l.Parsed {
			parsed[p] = true
		}
	}
	out := make([]map[string]bool, len(layers))
	for i, l := range layers {
		out[i] = map[string]bool{}
		for j := range l.Entries {
			if parsed[l.Entries[j].Path] {
				out[i][l.Entries[j].Path] = true
			}
		}
	}
	return out
}

func diffID(im *image.Image, idx int) string {
	if idx >= 0 && idx < len(im.Layers) {
		return im.Layers[idx].DiffID
	}
	return ""
}

func layerInfos(im *image.Image, pkgs []catalog.Package) []LayerInfo {
	counts := map[int]int{}
	for _, p := range pkgs {
		counts[p.Layer]++
	}
	out := make([]LayerInfo, 0, len(im.Layers))
	for _, l := range im.Layers {
		out = append(out, LayerInfo{Index: l.Index, DiffID: l.DiffID, Digest: l.Digest, MediaType: l.MediaType, Size: l.Size, CreatedBy: l.CreatedBy, Packages: counts[l.Index]})
	}
	return out
}
