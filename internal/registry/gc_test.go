package registry

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestGC checks that unreferenced blobs are collected only after the grace
// period, that referenced ones never are, that --dry-run changes nothing,
// and that stored content without a record is removed.
func TestGC(t *testing.T) {
	inst, ts := testRegistry(t)
	ctx := context.Background()
	c := newClient(ts.URL, "admin", adminPW)
	_, d := c.pushImage(t, "lib/app", "v1", []byte("kept layer"))
	loose := []byte("uploaded but never referenced")
	c.status(t, "POST", "/v2/lib/app/blobs/uploads/?digest="+sha(loose), loose, nil)

	rep, err := inst.GC(ctx, false, time.Hour)
	if err != nil || len(rep.Blobs) != 0 {
		t.Fatalf("gc within grace removed %v (%v)", rep.Blobs, err)
	}
	rep, _ = inst.GC(ctx, true, 0)
	if len(rep.Blobs) != 1 || rep.Blobs[0] != sha(loose) {
		t.Fatalf("dry run: %v", rep.Blobs)
	}
	if st := c.status(t, "HEAD", "/v2/lib/app/blobs/"+sha(loose), nil, nil); st != 200 {
		t.Fatalf("dry run removed a blob: %d", st)
	}
	rep, _ = inst.GC(ctx, false, 0)
	if len(rep.Blobs) != 1 {
		t.Fatalf("gc: %v", rep.Blobs)
	}
	if st := c.status(t, "HEAD", "/v2/lib/app/blobs/"+sha(loose), nil, nil); st != 404 {
		t.Fatalf("collected blob still visible: %d", st)
	}
	if _, err := inst.Blobs.Stat(ctx, sha(loose)); err == nil {
		t.Fatal("collected blob still stored")
	}
	if st := c.status(t, "GET", "/v2/lib/app/blobs/"+sha([]byte("kept layer")), nil, nil); st != 200 {
		t.Fatalf("referenced blob collected: %d", st)
	}
	// Deleting the manifest makes its blobs collectable.
	c.status(t, "DELETE", "/v2/lib/app/manifests/"+d, nil, nil)
	rep, _ = inst.GC(ctx, false, 0)
	if len(rep.Blobs) != 2 {
		t.Fatalf("after manifest delete gc removed %v", rep.Blobs)
	}
}

// TestGCWhileServing runs garbage collection in a loop while clients push
// and pull images; every push and pull must succeed.
func TestGCWhileServing(t *testing.T) {
	inst, ts := testRegistry(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if _, err := inst.GC(ctx, false, time.Minute); err != nil && ctx.Err() == nil {
				t.Error(err)
			}
		}
	}()
	var cw sync.WaitGroup
	for i := 0; i < 8; i++ {
		cw.Add(1)
		go func(i int) {
			defer cw.Done()
			c := newClient(ts.URL, "admin", adminPW)
			for j := 0; j < 5; j++ {
				repo := fmt.Sprintf("lib/app%d", i)
				_, d := c.pushImage(t, repo, fmt.Sprintf("v%d", j), []byte(fmt.Sprintf("layer %d %d", i, j)))
				if st := c.status(t, "GET", "/v2/"+repo+"/manifests/"+d, nil, nil); st != 200 {
					t.Errorf("pull during gc: %d", st)
				}
				if st := c.status(t, "GET", "/v2/"+repo+"/blobs/"+sha([]byte(fmt.Sprintf("layer %d %d", i, j))), nil, nil); st != 200 {
					t.Errorf("blob pull during gc: %d", st)
				}
			}
		}(i)
	}
	cw.Wait()
	cancel()
	wg.Wait()
}

// TestGCStaleUploads removes abandoned upload sessions after the grace period.
func TestGCStaleUploads(t *testing.T) {
	inst, ts := testRegistry(t)
	c := newClient(ts.URL, "admin", adminPW)
	resp := c.do(t, "POST", "/v2/lib/app/blobs/uploads/", nil, nil)
	loc := resp.Header.Get("Location")
	resp.Body.Close()
	c.status(t, "PATCH", loc, []byte("abandoned"), map[string]string{"Content-Type": "application/octet-stream"})
	rep, _ := inst.GC(context.Background(), false, time.Hour)
	if rep.Uploads != 0 {
		t.Fatalf("fresh upload counted stale")
	}
	time.Sleep(5 * time.Millisecond)
	rep, _ = inst.GC(context.Background(), false, time.Millisecond)
	if rep.Uploads != 1 {
		t.Fatalf("stale uploads: %d", rep.Uploads)
	}
	if st := c.status(t, "GET", loc, nil, nil); st != 404 {
		t.Fatalf("abandoned upload still answers: %d", st)
	}
}
