package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/moat-dev/moat/internal/fleet"
	"github.com/moat-dev/moat/internal/image"
	"github.com/moat-dev/moat/internal/sbom"
	"github.com/moat-dev/moat/internal/scan"
)

// retryFailedScan is how long an image whose scan failed is left alone.
const retryFailedScan = 10 * time.Minute

// scanLoop catalogues, one image at a time with a pause between two, the
// images of the host's containers that the server has no SBOM for.
func (a *Agent) scanLoop(ctx context.Context) {
	failed := map[string]time.Time{}
	periodic := time.NewTicker(5 * time.Minute)
	defer periodic.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.scanWake:
		case <-periodic.C:
		}
		type img struct{ key, id, ref, digest string }
		a.mu.Lock()
		byKey := map[string]img{}
		for _, c := range a.containers {
			if k := c.ImageKey(); k != "" && c.ImageID != "" {
				byKey[k] = img{k, c.ImageID, c.Image, c.Digest}
			}
		}
		a.mu.Unlock()
		if len(byKey) == 0 {
			continue
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var resp fleet.MissingResponse
		if err := a.fc.Do(ctx, http.MethodPost, "images/missing", fleet.MissingRequest{Images: keys}, &resp); err != nil {
			a.log.Warn("asking the server which images it lacks SBOMs for", "err", err)
			continue
		}
		for _, k := range resp.Missing {
			im, ok := byKey[k]
			if !ok || time.Since(failed[k]) < retryFailedScan {
				continue
			}
			if err := a.scanImage(ctx, im.key, im.id, im.ref, im.digest); err != nil {
				if ctx.Err() != nil {
					return
				}
				failed[k] = time.Now()
				a.scansFailed.Add(1)
				a.log.Warn("cataloguing an image the server has not seen", "image", im.ref, "id", im.id, "err", err)
			} else {
				delete(failed, k)
				a.scansOK.Add(1)
			}
			if !sleep(ctx, a.cfg.ScanPause) {
				return
			}
		}
	}
}

// scanImage catalogues one image from the engine (the same pipeline as
// `moat scan docker:ID`, one layer at a time) and sends its CycloneDX SBOM.
func (a *Agent) scanImage(ctx context.Context, key, id, ref, digest string) error {
	start := time.Now()
	res, err := scan.Scan(ctx, "docker:"+id, scan.Options{
		Image: image.Options{DockerHost: a.cfg.DockerHost}, Parallelism: 1, TempDir: a.cfg.ScanTempDir,
	})
	if err != nil {
		return err
	}
	s := sbom.Subject{Name: ref, Digest: digest, ImageID: res.Subject.ImageID, Platform: res.Subject.Platform}
	if s.Name == "" {
		s.Name = id
	}
	if res.OS != nil {
		s.OSName, s.OSVersion = res.OS.ID, res.OS.VersionID
	}
	for _, l := range res.Layers {
		s.Layers = append(s.Layers, sbom.Layer{Index: l.Index, DiffID: l.DiffID, Digest: l.Digest, CreatedBy: l.CreatedBy, Size: l.Size})
	}
	var buf bytes.Buffer
	if err := sbom.WriteCycloneDX(&buf, s, res.Packages, sbom.ToolInfo{Name: "moat", Version: a.cfg.Version}); err != nil {
		return fmt.Errorf("writing the SBOM: %w", err)
	}
	if err := a.fc.Do(ctx, http.MethodPut, "sboms/"+url.PathEscape(key), buf.Bytes(), nil); err != nil {
		var se *fleet.StatusError
		if errors.As(err, &se) && se.Status == http.StatusConflict {
			return nil // another agent sent it meanwhile
		}
		return fmt.Errorf("sending the SBOM: %w", err)
	}
	a.log.Info("catalogued an image for the server", "image", ref, "key", key, "packages", len(res.Packages), "took", time.Since(start).Round(time.Millisecond).String())
	return nil
}
