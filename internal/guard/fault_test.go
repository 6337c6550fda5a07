package guard

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/moat-dev/moat/internal/auth"
	it "github.com/moat-dev/moat/internal/imagetest"
)

func TestCorruptLayerFailsBoundedAndBlocksUnscanned(t *testing.T) {
	db := t.TempDir()
	importDB(t, db, osvRecord("GHSA-p6mc-m468-83gw", "CVE-2020-8203", "lodash", "3.7.0", "4.17.19", critical))
	e := start(t, db, func(o *Options) { o.MaxAttempts = 2 })
	ctx := context.Background()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, static.NewLayer([]byte("\x1f\x8b\x08 this is not a gzip stream"), types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	bad := e.push(t, "team/bad:1", img)
	good := e.push(t, "team/good:1", appImage(t, "4.17.20"))
	im := e.waitStatus(t, "team/bad", bad)
	if im.Status != "failed" || im.Error == "" {
		t.Fatalf("corrupt image: %+v", im)
	}
	var attempts int
	e.g.ro.QueryRow(`SELECT attempts FROM jobs WHERE digest = ?`, bad).Scan(&attempts)
	if attempts != 2 {
		t.Fatalf("attempts = %d, want the bound 2", attempts)
	}
	// Other scans go on.
	if g := e.waitStatus(t, "team/good", good); g.Status != "scanned" {
		t.Fatalf("good image: %+v", g)
	}
	yes := true
	var s Settings
	e.api(t, "PATCH", "projects/team", "admin", adminPW, SettingsUpdate{BlockUnscanned: &yes}, &s)
	h, _ := auth.HashPassword("reader-pw")
	e.inst.Store.CreateUser(ctx, "rita", h, false)
	e.inst.Store.SetMember(ctx, "team", "rita", auth.RoleReader)
	e.inst.Auth.Invalidate()
	_, err = remote.Image(e.ref(t, "team/bad:1"), basic("rita", "reader-pw"))
	if err == nil || !strings.Contains(err.Error(), "scan failed") || !strings.Contains(err.Error(), "block-unscanned") {
		t.Fatalf("pull of a failed scan: %v", err)
	}
	if _, err := remote.Image(e.ref(t, "team/good:1"), basic("rita", "reader-pw")); err != nil {
		t.Fatalf("pull of a clean image: %v", err)
	}
	// A deleted image leaves the listing.
	if err := remote.Delete(e.ref(t, "team/bad@"+bad), basic("admin", adminPW)); err != nil {
		t.Fatal(err)
	}
	ims, _ := e.g.Images(ctx, "team", nil)
	if len(ims) != 1 || ims[0].Digest != good {
		t.Fatalf("images after a delete: %+v", ims)
	}
}

// TestJobsSurviveRestart: jobs queued or running when the server stops
// (a crash leaves them "running") run on the next start; nothing is stuck.
func TestJobsSurviveRestart(t *testing.T) {
	db := t.TempDir()
	importDB(t, db, osvRecord("GHSA-p6mc-m468-83gw", "CVE-2020-8203", "lodash", "3.7.0", "4.17.19", critical))
	e := start(t, db, nil)
	ctx := context.Background()
	// Stop the workers, then push: the jobs wait in the database.
	e.g.stop()
	e.g.wg.Wait()
	d1 := e.push(t, "team/a:1", appImage(t, "4.17.15"))
	d2 := e.push(t, "team/b:1", it.Image(t, it.Step{Layer: it.Layer(t, it.Text("/app/node_modules/lodash/package.json", `{"name":"lodash","version":"4.17.10"}`))}))
	// As a kill mid-scan leaves it: one job running, its image scanning.
	if _, err := e.g.rw.Exec(`UPDATE jobs SET state = 'running', attempts = 1 WHERE digest = ?`, d1); err != nil {
		t.Fatal(err)
	}
	e.g.rw.Exec(`UPDATE images SET status = 'scanning' WHERE digest = ?`, d1)
	e.g.stop = nil
	if err := e.g.Close(); err != nil {
		t.Fatal(err)
	}
	g2, err := Open(ctx, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.g = g2
	e.inst.OnPush, e.inst.Gate = g2, g2
	g2.Start()
	for _, d := range []struct{ repo, dg string }{{"team/a", d1}, {"team/b", d2}} {
		if im := e.waitStatus(t, d.repo, d.dg); im.Status != "scanned" || im.Counts["CRITICAL"] != 1 {
			t.Fatalf("%s after restart: %+v", d.repo, im)
		}
	}
	// The job row goes right after the image's results are written.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var n int
		g2.ro.QueryRow(`SELECT COUNT(*) FROM jobs`).Scan(&n)
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs left", n)
		}
	}
}

func TestIndexQueuesEachPlatformAndIsGated(t *testing.T) {
	db := t.TempDir()
	importDB(t, db, osvRecord("GHSA-p6mc-m468-83gw", "CVE-2020-8203", "lodash", "3.7.0", "4.17.19", critical))
	e := start(t, db, nil)
	ctx := context.Background()
	amd := it.WithPlatform(t, appImage(t, "4.17.20"), "linux", "amd64", "")
	arm := it.WithPlatform(t, appImage(t, "4.17.15"), "linux", "arm64", "")
	idx := it.Index(t, amd, arm)
	if err := remote.WriteIndex(e.ref(t, "team/multi:1"), idx, basic("admin", adminPW)); err != nil {
		t.Fatal(err)
	}
	da, _ := amd.Digest()
	dr, _ := arm.Digest()
	ia := e.waitStatus(t, "team/multi", da.String())
	ir := e.waitStatus(t, "team/multi", dr.String())
	id, _ := idx.Digest()
	if ia.Counts["CRITICAL"] != 0 || ir.Counts["CRITICAL"] != 1 || ir.Index != id.String() || ir.Platform != "linux/arm64" {
		t.Fatalf("platform images: %+v %+v", ia, ir)
	}
	var fs []ImageFindings
	e.api(t, "GET", "findings?repository=team/multi&ref=1", "admin", adminPW, nil, &fs)
	if len(fs) != 2 {
		t.Fatalf("findings of the index: %d images", len(fs))
	}
	sev := "high"
	var s Settings
	e.api(t, "PATCH", "projects/team", "admin", adminPW, SettingsUpdate{BlockSeverity: &sev}, &s)
	h, _ := auth.HashPassword("reader-pw")
	e.inst.Store.CreateUser(ctx, "rita", h, false)
	e.inst.Store.SetMember(ctx, "team", "rita", auth.RoleReader)
	e.inst.Auth.Invalidate()
	_, err := remote.Index(e.ref(t, "team/multi:1"), basic("rita", "reader-pw"))
	if err == nil || !strings.Contains(err.Error(), "at or above high") {
		t.Fatalf("index pull: %v", err)
	}
	if _, err := remote.Image(e.ref(t, "team/multi@"+da.String()), basic("rita", "reader-pw")); err != nil {
		t.Fatalf("clean platform image: %v", err)
	}
}

// TestRescanInterruptedLosesNothing: a rescan writes one image per
// transaction; an image whose transaction a kill prevented keeps its old
// findings and match digest, and the next rescan brings it up to date.
func TestRescanInterruptedLosesNothing(t *testing.T) {
	db := t.TempDir()
	leftpad := osvRecord("GHSA-aaaa-bbbb-cccc", "CVE-2099-0001", "left-pad", "0", "1.4.0", medium)
	importDB(t, db, leftpad)
	e := start(t, db, nil)
	ctx := context.Background()
	var dgs []string
	for i, v := range []string{"4.17.15", "4.17.16", "4.17.17"} {
		d := e.push(t, fmt.Sprintf("team/app%d:1", i), appImage(t, v))
		e.waitStatus(t, fmt.Sprintf("team/app%d", i), d)
		dgs = append(dgs, d)
	}
	var oldHash string
	e.g.ro.QueryRow(`SELECT fhash FROM images WHERE digest = ?`, dgs[1]).Scan(&oldHash)
	importDB(t, db, leftpad, osvRecord("GHSA-p6mc-m468-83gw", "CVE-2020-8203", "lodash", "3.7.0", "4.17.19", critical))
	e.g.reloadDB()
	if res, err := e.g.Rescan(ctx); err != nil || res.Changed != 3 {
		t.Fatalf("rescan: %+v %v", res, err)
	}
	// As if the kill came before image 1's transaction committed.
	e.g.rw.Exec(`DELETE FROM findings WHERE digest = ? AND vuln_id = 'CVE-2020-8203'`, dgs[1])
	e.g.rw.Exec(`UPDATE images SET fhash = ? WHERE digest = ?`, oldHash, dgs[1])
	res, err := e.g.Rescan(ctx)
	if err != nil || res.Changed != 1 || res.NewFindings != 1 {
		t.Fatalf("rescan after the interruption: %+v %v", res, err)
	}
	for i, d := range dgs {
		fs, _, _ := e.g.storedFindings(ctx, fmt.Sprintf("team/app%d", i), d)
		if len(fs) != 2 {
			t.Fatalf("image %d has %d findings", i, len(fs))
		}
	}
}
