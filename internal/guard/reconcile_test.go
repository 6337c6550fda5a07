package guard

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/scan"
)

// TestReconcileQueuesUnscanned: an image the registry committed without the
// guard hearing of it (scanning off, or a crash before the job was queued)
// is queued and scanned by Reconcile; images already known are left alone.
func TestReconcileQueuesUnscanned(t *testing.T) {
	db := t.TempDir()
	importDB(t, db, osvRecord("GHSA-p6mc-m468-83gw", "CVE-2020-8203", "lodash", "3.7.0", "4.17.19", critical))
	e := start(t, db, nil)
	ctx := context.Background()

	known := e.push(t, "team/known:1.0", appImage(t, "4.17.15"))
	e.waitStatus(t, "team/known", known)

	e.inst.OnPush = nil // the push below reaches the registry only
	missed := e.push(t, "team/missed:1.0", appImage(t, "4.17.20"))
	if ims, _ := e.g.Images(ctx, "team", nil); len(ims) != 1 {
		t.Fatalf("setup: the guard already knows %d images", len(ims))
	}
	n, err := e.g.Reconcile(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Reconcile queued %d (%v), want the one missed image", n, err)
	}
	im := e.waitStatus(t, "team/missed", missed)
	if im.Status != "scanned" {
		t.Fatalf("missed image: %+v", im)
	}
	if n, err := e.g.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("second Reconcile queued %d (%v), want 0", n, err)
	}
}

// TestReconcileRescansOldCatalog: an image whose packages an older
// cataloger found (here: one that missed lodash) keeps the old answer on
// a re-match; Reconcile scans it again from storage, and it stays
// "scanned" (its pulls never held up) until the new findings replace the
// old ones, keeping the push-time count.
func TestReconcileRescansOldCatalog(t *testing.T) {
	db := t.TempDir()
	importDB(t, db, osvRecord("GHSA-p6mc-m468-83gw", "CVE-2020-8203", "lodash", "3.7.0", "4.17.19", critical))
	e := start(t, db, nil)
	ctx := context.Background()
	dg := e.push(t, "team/app:1.0", appImage(t, "4.17.15"))
	if im := e.waitStatus(t, "team/app", dg); im.Status != "scanned" {
		t.Fatalf("scan: %+v", im)
	}
	findings := func() int {
		var n int
		e.g.ro.QueryRowContext(ctx, `SELECT COUNT(*) FROM findings WHERE repo = ? AND digest = ?`, "team/app", dg).Scan(&n)
		return n
	}
	var cv string
	var pushFindings int
	e.g.ro.QueryRowContext(ctx, `SELECT catalog_version, push_findings FROM images WHERE digest = ?`, dg).Scan(&cv, &pushFindings)
	if cv != scan.CatalogVersion || findings() != 1 || pushFindings != 1 {
		t.Fatalf("after the scan: catalog %q, %d findings, push_findings %d", cv, findings(), pushFindings)
	}

	// What an older moat left: packages without lodash, catalog "2".
	var blob []byte
	if err := e.g.ro.QueryRowContext(ctx, `SELECT packages FROM images WHERE digest = ?`, dg).Scan(&blob); err != nil {
		t.Fatal(err)
	}
	st, err := decodeStored(blob)
	if err != nil {
		t.Fatal(err)
	}
	var kept []catalog.Package
	for _, p := range st.Packages {
		if p.Name != "lodash" {
			kept = append(kept, p)
		}
	}
	st.Packages = kept
	blob, _ = encodeStored(st)
	if _, err := e.g.rw.ExecContext(ctx, `UPDATE images SET packages = ?, pkg_ids = NULL, fhash = '', catalog_version = '2' WHERE digest = ?`, blob, dg); err != nil {
		t.Fatal(err)
	}
	if _, err := e.g.Rescan(ctx); err != nil {
		t.Fatal(err)
	}
	if n := findings(); n != 0 {
		t.Fatalf("a re-match of the old packages gave %d findings, want the old answer (0)", n)
	}

	n, err := e.g.Reconcile(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Reconcile queued %d (%v), want the one image", n, err)
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		var status string
		e.g.ro.QueryRowContext(ctx, `SELECT status, catalog_version, push_findings FROM images WHERE digest = ?`, dg).Scan(&status, &cv, &pushFindings)
		if status != "scanned" {
			t.Fatalf("status %q during the re-scan: pulls would be held up", status)
		}
		if cv == scan.CatalogVersion {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the image was not scanned again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if findings() != 1 || pushFindings != 1 {
		t.Fatalf("after the re-scan: %d findings, push_findings %d", findings(), pushFindings)
	}
	if _, err := remote.Get(e.ref(t, "team/app:1.0"), basic("admin", adminPW)); err != nil {
		t.Fatalf("pull after the re-scan: %v", err)
	}
	if n, err := e.g.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("second Reconcile queued %d (%v), want 0", n, err)
	}
}
