package guard

import (
	"context"
	"fmt"

	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/vulndb"
)

// Match matches packages against the database the guard currently uses, so
// other parts of moat serve (the fleet view of running containers) see the
// same data as the registry, swapped in the moment `moat db update` lands.
func (g *Guard) Match(ctx context.Context, pkgs []catalog.Package) (*match.Result, error) {
	g.dbMu.RLock()
	defer g.dbMu.RUnlock()
	if g.db == nil {
		return nil, fmt.Errorf("%w: run `moat db update`", vulndb.ErrNoDatabase)
	}
	return match.Matcher{DB: g.db}.Match(ctx, pkgs)
}

// OnRescan registers fn to run after every completed re-scan (database
// change or schedule), e.g. to re-match the SBOMs of running containers.
func (g *Guard) OnRescan(fn func(ctx context.Context)) { g.afterRescan.Store(&fn) }
