// Package scan runs moat's scan pipeline: open an image source, read every
// layer once with the catalogers, squash the layers, detect the OS, and
// return the packages with the layer that brought each one in.
package scan

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/distro"
	"github.com/moat-dev/moat/internal/image"
)

// Options configure a scan.
type Options struct {
	Image image.Options
	// Catalogers to run; nil means Catalogers().
	Catalogers []catalog.Cataloger
	// Parallelism bounds how many layers are read at once (default: cores).
	Parallelism int
	// TempDir is where the scan's private temporary directory is made
	// (default os.TempDir()); it is removed when the scan ends.
	TempDir string
	// Progress, when set, is called as layers are read.
	Progress func(Progress)
	// Cache, when set, holds per-layer results by diff ID: a layer found
	// there is not read again.
	Cache LayerCache
}

// Progress reports how far a scan is.
type Progress struct {
	LayersDone, LayersTotal int
	Bytes                   int64 // uncompressed bytes read so far
}

// LayerInfo describes one layer in a result.
type LayerInfo struct {
	Index     int    `json:"index"`
	DiffID    string `json:"diffID"`
	Digest    string `json:"digest,omitempty"`
	MediaType string `json:"mediaType,omitempty"`
	Size      int64  `json:"size,omitempty"`
	CreatedBy string `json:"createdBy,omitempty"`
	Packages  int    `json:"packages"`
}

// Subject is what was scanned.
type Subject struct {
	Name      string            `json:"name"`
	Source    string            `json:"source"`
	Reference string            `json:"reference,omitempty"`
	Digest    string            `json:"digest,omitempty"`
	ImageID   string            `json:"imageID,omitempty"`
	Platform  string            `json:"platform,omitempty"`
	Created   time.Time         `json:"created,omitzero"`
	User      string            `json:"user,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Result is the outcome of a scan.
type Result struct {
	Schema   string            `json:"schema"`
	Subject  Subject           `json:"subject"`
	OS       *distro.Release   `json:"os,omitempty"`
	Layers   []LayerInfo       `json:"layers"`
	Packages []catalog.Package `json:"packages"`
	Warnings []string          `json:"warnings,omitempty"`
	Stats    Stats             `json:"stats"`
}

// Stats are figures about the scan itself.
type Stats struct {
	Files    int           `json:"files"`
	Bytes    int64         `json:"bytes"`
	Duration time.Duration `json:"durationNs"`
}

// SchemaVersion names the JSON document format (docs/scan-json.md).
const SchemaVersion = "moat.scan/v1"

// Scan opens spec and scans it.
func Scan(ctx context.Context, spec string, opts Options) (*Result, error) {
	im, err := image.Open(ctx, spec, opts.Image)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	return ScanImage(ctx, im, opts)
}

// ScanImage scans an opened image.
func ScanImage(ctx context.Context, im *image.Image, opts Options) (*Result, error) {
	start := time.Now()
	cats := opts.Catalogers
	if cats == nil {
		cats = Catalogers()
	}
	tmp, err := os.MkdirTemp(opts.TempDir, "moat-scan-")
	if err != nil {
		return nil, fmt.Errorf("creating a private temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	var bytesRead atomic.Int64
	w := &image.Walker{Catalogers: cats, Capture: distro.Wants, TempDir: tmp, BytesRead: &bytesRead}

	var layers []*image.LayerResult
	switch {
	case im.Dir != "":
		lr, err := w.WalkDir(ctx, im.Dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", im.Name, err)
		}
		layers = []*image.LayerResult{lr}
	default:
		layers, err = readLayers(ctx, im, w, opts, &bytesRead)
		if err != nil {
			return nil, err
		}
	}
	fs := image.Squash(layers)
	res := &Result{Schema: SchemaVersion, Subject: subject(im), Stats: Stats{Files: fs.Len(), Bytes: bytesRead.Load()}}
	for _, l := range layers {
		for _, msg := range l.Warnings {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s: layer %s: %s", im.Name, layerName(im, l.Index), msg))
		}
	}
	rel, ok := detectOS(fs, layers)
	if ok {
		res.OS = &rel
	}
	res.Packages = collect(im, fs, layers, rel)
	res.Layers = layerInfos(im, res.Packages)
	res.Stats.Duration = time.Since(start)
	return res, nil
}

func layerName(im *image.Image, idx int) string {
	if idx < 0 || idx >= len(im.Layers) {
		return "(root filesystem)"
	}
	return fmt.Sprintf("%d (%s)", idx, short(im.Layers[idx].DiffID))
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func subject(im *image.Image) Subject {
	s := Subject{Name: im.Name, Source: im.Source, Reference: im.Reference, Digest: im.Digest, ImageID: im.ImageID, Platform: im.Platform}
	if im.Config != nil {
		s.Created = im.Config.Created.Time
		s.User = im.Config.Config.User
		s.Labels = im.Config.Config.Labels
	}
	return s
}

// readLayers reads every layer once, several at a time, and returns the
// results in layer order.
func readLayers(ctx context.Context, im *image.Image, w *image.Walker, opts Options, bytesRead *atomic.Int64) ([]*image.LayerResult, error) {
	n := len(im.Layers)
	total := n
	var done atomic.Int64
	report := func() {
		if opts.Progress != nil {
			opts.Progress(Progress{LayersDone: int(done.Load()), LayersTotal: total, Bytes: bytesRead.Load()})
		}
	}
	stopTicker := startTicker(report)
	defer stopTicker()

	if im.Streamed() {
		byKey := map[string]*image.LayerResult{}
		err := im.Stream(ctx, func(key string, r io.Reader) error {
			lr, err := w.WalkLayer(ctx, 0, r)
			if err != nil {
				return fmt.Errorf("%s: layer %s: %w", im.Name, key, err)
			}
			byKey[key] = lr
			done.Add(1)
			return nil
		})
		if err != nil {
			return nil, err
		}
		total = len(im.Layers)
		out := make([]*image.LayerResult, len(im.Layers))
		for i, key := range im.StreamKeys() {
			lr := *byKey[key]
			lr.Index = i
			out[i] = &lr
		}
		report()
		return out, nil
	}

	par := opts.Parallelism
	if par <= 0 {
		par = runtime.GOMAXPROCS(0)
	}
	out := make([]*image.LayerResult, n)
	var errOnce sync.Once
	var firstErr error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	// Largest layers first, so the long ones do not start last.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return im.Layers[order[a]].Size > im.Layers[order[b]].Size })
	for _, i := range order {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			l := im.Layers[i]
			if opts.Cache != nil {
				if lr, ok := opts.Cache.Get(l.DiffID); ok {
					lr.Index = i
					out[i] = lr
					done.Add(1)
					return
				}
			}
			lr, err := readLayer(ctx, w, l)
			if err == nil && opts.Cache != nil && l.DiffID != "" {
				opts.Cache.Put(l.DiffID, lr)
			}
			if err != nil {
				errOnce.Do(func() { firstErr = fmt.Errorf("%s: layer %s: %w", im.Name, layerName(im, i), err) })
				cancel()
				return
			}
			out[i] = lr
			done.Add(1)
		}(i)
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	report()
	return out, nil
}

func readLayer(ctx context.Context, w *image.Walker, l image.Layer) (*image.LayerResult, error) {
	rc, err := l.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return w.WalkLayer(ctx, l.Index, rc)
}

func startTicker(fn func()) func() {
	t := time.NewTicker(200 * time.Millisecond)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.C:
				fn()
			case <-stop:
				return
			}
		}
	}()
	return func() { t.Stop(); close(stop) }
}

func detectOS(fs *image.FS, layers []*image.LayerResult) (distro.Release, bool) {
	byIndex := map[int]*image.LayerResult{}
	for _, l := range layers {
		byIndex[l.Index] = l
	}
	files := map[string][]byte{}
	for _, p := range distro.Files {
		rp, err := fs.Resolve(p)
		if err != nil {
			continue
		}
		e, layer, ok := fs.Lookup(rp)
		if !ok || e.Kind != image.KindFile {
			continue
		}
		if lr := byIndex[layer]; lr != nil {
			if b, ok := lr.Captured[rp]; ok {
				files[p] = b
			}
		}
	}
	e, _, ok := fs.Lookup("/var/lib/dpkg/status.d")
	statusD := ok && e.Kind == image.KindDir
	if _, _, ok := fs.Lookup("/var/lib/dpkg/status"); ok {
		statusD = false
	}
	return distro.Detect(files, statusD)
}
