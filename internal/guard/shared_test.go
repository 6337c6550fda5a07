package guard

import (
	"context"
	"testing"

	"github.com/moat-dev/moat/internal/catalog"
)

// TestSharedMatcherFollowsDatabase: Match uses the database the guard has
// swapped in, and the OnRescan hook runs after the re-scan a change causes.
func TestSharedMatcherFollowsDatabase(t *testing.T) {
	db := t.TempDir()
	importDB(t, db, osvRecord("GHSA-aaaa-bbbb-cccc", "CVE-2099-0001", "left-pad", "0", "1.4.0", medium))
	e := start(t, db, nil)
	ctx := context.Background()
	pkgs := []catalog.Package{{Name: "lodash", Version: "4.17.15", Type: catalog.TypeNpm, Ecosystem: "npm", Locations: []catalog.Location{{Path: "/app/node_modules/lodash/package.json"}}}}
	res, err := e.g.Match(ctx, pkgs)
	if err != nil || len(res.Findings) != 0 {
		t.Fatalf("before: %v, %+v", err, res)
	}
	hooked := make(chan struct{}, 1)
	e.g.OnRescan(func(context.Context) { hooked <- struct{}{} })
	importDB(t, db, osvRecord("GHSA-p6mc-m468-83gw", "CVE-2020-8203", "lodash", "3.7.0", "4.17.19", critical))
	if !e.g.reloadDB() {
		t.Fatal("database change not detected")
	}
	e.g.logRescan(ctx, "test")
	select {
	case <-hooked:
	default:
		t.Fatal("OnRescan hook did not run after the re-scan")
	}
	res, err = e.g.Match(ctx, pkgs)
	if err != nil || len(res.Findings) != 1 || res.Findings[0].ID != "CVE-2020-8203" {
		t.Fatalf("after the update: %v, %+v", err, res)
	}
}
