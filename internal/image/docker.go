package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/docker/docker/client"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func openDockerArchive(spec string) (*Image, error) {
	p, tagStr := spec, ""
	if _, err := os.Stat(p); err != nil {
		if i := strings.LastIndex(spec, ":"); i > 0 {
			if _, err := os.Stat(spec[:i]); err == nil {
				p, tagStr = spec[:i], spec[i+1:]
			}
		}
	}
	var tag *name.Tag
	if tagStr != "" {
		t, err := name.NewTag(tagStr)
		if err != nil {
			return nil, fmt.Errorf("tag %q: %w", tagStr, err)
		}
		tag = &t
	}
	if _, err := os.Stat(p); err != nil {
		return nil, err
	}
	img, err := tarball.ImageFromPath(p, tag)
	if err != nil {
		return nil, fmt.Errorf("not a readable docker save tarball: %w", err)
	}
	im := &Image{Source: "docker-archive", Reference: p}
	if err := fromV1(img, im); err != nil {
		return nil, err
	}
	// A docker save tarball has no registry manifest; the digest ggcr
	// computes describes its own rendering, so keep only the image ID.
	im.Digest = ""
	return im, nil
}

// openDaemon reads an image from a Docker engine through the Engine API:
// inspect for the metadata, then one `docker save` stream read in a single
// pass, so memory stays bounded and nothing is written to disk.
func openDaemon(ctx context.Context, ref string, opts Options) (*Image, error) {
	copts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if opts.DockerHost != "" {
		copts = append(copts, client.WithHost(opts.DockerHost))
	}
	cli, err := client.NewClientWithOpts(copts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	insp, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		cli.Close()
		if client.IsErrConnectionFailed(err) {
			return nil, fmt.Errorf("cannot reach the Docker engine at %s (is dockerd running and may you use its socket?): %w", cli.DaemonHost(), err)
		}
		return nil, fmt.Errorf("docker engine: %w", err)
	}
	im := &Image{Source: "docker", Reference: ref, ImageID: insp.ID}
	for _, rd := range insp.RepoDigests {
		if i := strings.Index(rd, "@"); i > 0 {
			im.Digest = rd[i+1:]
			break
		}
	}
	im.Platform = insp.Os + "/" + insp.Architecture
	if insp.Variant != "" {
		im.Platform += "/" + insp.Variant
	}
	im.closers = append(im.closers, func() { cli.Close() })
	// Config and layer order come from the save stream itself (its
	// manifest.json and config blob), which describe exactly what is read.
	im.stream = func(ctx context.Context, visit func(key string, r io.Reader) error) error {
		rc, err := cli.ImageSave(ctx, []string{insp.ID})
		if err != nil {
			return fmt.Errorf("docker save: %w", err)
		}
		defer rc.Close()
		return streamSave(rc, im, visit)
	}
	return im, nil
}

// saveManifest is an entry of a docker save manifest.json.
type saveManifest struct {
	Config string
	Layers []string
}

// streamSave reads a docker save tarball in one pass. Every member that is
// a layer (a tar, possibly compressed) is visited as it streams by, keyed by
// its member name; small JSON members are kept. At the end manifest.json
// says which members are the config and the layers, in order.
func streamSave(r io.Reader, im *Image, visit func(key string, r io.Reader) error) error {
	tr := tar.NewReader(r)
	jsons := map[string][]byte{}
	visited := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading docker save stream: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
			continue
		}
		nm := strings.TrimPrefix(hdr.Name, "./")
		br := bufio.NewReaderSize(tr, 64<<10)
		head, _ := br.Peek(1)
		if len(head) == 1 && (head[0] == '{' || head[0] == '[') {
			if hdr.Size <= maxMetadata {
				b, err := io.ReadAll(br)
				if err != nil {
					return fmt.Errorf("reading %s: %w", nm, err)
				}
				jsons[nm] = b
			}
			continue
		}
		if !strings.HasSuffix(nm, "/layer.tar") && !strings.HasPrefix(nm, "blobs/") {
			continue // VERSION files, legacy v1 metadata
		}
		if err := visit(nm, br); err != nil {
			return err
		}
		visited[nm] = true
	}
	var ms []saveManifest
	if err := json.Unmarshal(jsons["manifest.json"], &ms); err != nil || len(ms) == 0 {
		return errors.New("docker save stream has no usable manifest.json")
	}
	m := ms[0]
	cfgRaw, ok := jsons[m.Config]
	if !ok {
		return fmt.Errorf("docker save stream lacks the config %s", m.Config)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(cfgRaw))
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	im.Config = cfg
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return fmt.Errorf("config lists %d layers but manifest.json %d", len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	hist := layerHistory(cfg)
	im.Layers = nil
	im.streamKeys = nil
	for i, l := range m.Layers {
		if !visited[l] {
			return fmt.Errorf("docker save stream lacks layer %s", l)
		}
		ly := Layer{Index: i, DiffID: cfg.RootFS.DiffIDs[i].String(), Digest: cfg.RootFS.DiffIDs[i].String()}
		if i < len(hist) {
			ly.CreatedBy = hist[i]
		}
		im.Layers = append(im.Layers, ly)
		im.streamKeys = append(im.streamKeys, l)
	}
	return nil
}
