package guard

import (
	"context"
	"testing"
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
