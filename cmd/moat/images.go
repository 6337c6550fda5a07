package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/moat-dev/moat/internal/guard"
	"github.com/moat-dev/moat/internal/registry"
	"github.com/moat-dev/moat/internal/vulndb"
)

// openGuard starts scanning on push, the vulnerability pull gate, re-scans
// and webhooks beside the registry.
func openGuard(ctx context.Context, dataDir, dbDir string, rescan time.Duration, webhooks []string, inst *registry.Instance, log *slog.Logger) (*guard.Guard, error) {
	dir, err := vulndb.ResolveDir(dbDir)
	if err != nil {
		dir = ""
	}
	g, err := guard.Open(ctx, guard.Options{
		Store: inst.Store, Blobs: inst.Blobs, Auth: inst.Auth, Audit: inst.Audit,
		DataDir: filepath.Join(dataDir, "guard"), DBDir: dir, RescanInterval: rescan,
		Webhooks: webhooks, WebhookSecret: os.Getenv("MOAT_WEBHOOK_SECRET"), Version: version, Log: log,
	})
	if err != nil {
		return nil, err
	}
	inst.OnPush, inst.Gate = g, g
	g.Start()
	return g, nil
}
