package guard

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	it "github.com/moat-dev/moat/internal/imagetest"
)

func TestReport(t *testing.T) {
	db := t.TempDir()
	leftpad := osvRecord("GHSA-aaaa-bbbb-cccc", "CVE-2099-0001", "left-pad", "0", "1.4.0", medium)
	importDB(t, db, leftpad)
	e := start(t, db, nil)
	ctx := context.Background()
	// An approved base image, and an app built on it (base layer first).
	baseLayer := it.Layer(t, it.Text("/etc/os-release", "ID=debian\nVERSION_ID=12\n"))
	base := it.Image(t, it.Step{Layer: baseLayer, CreatedBy: "base"})
	baseDg := e.push(t, "base/debian:12", base)
	app, err := mutate.AppendLayers(base, it.Layer(t,
		it.Text("/app/node_modules/lodash/package.json", `{"name":"lodash","version":"4.17.15"}`),
		it.Text("/app/node_modules/left-pad/package.json", `{"name":"left-pad","version":"1.3.0"}`)))
	if err != nil {
		t.Fatal(err)
	}
	appDg := e.push(t, "team/app:1.0", app)
	if err := remote.Tag(e.ref(t, "team/app:1.0").Context().Tag("prod"), app, basic("admin", adminPW)); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(t, "base/debian", baseDg)
	e.waitStatus(t, "team/app", appDg)
	// A newer base image takes the tag; the database gains a lodash record.
	newBase := it.Image(t, it.Step{Layer: it.Layer(t, it.Text("/etc/os-release", "ID=debian\nVERSION_ID=12.9\n")), CreatedBy: "base"})
	e.waitStatus(t, "base/debian", e.push(t, "base/debian:12", newBase))
	importDB(t, db, leftpad, osvRecord("GHSA-p6mc-m468-83gw", "CVE-2020-8203", "lodash", "3.7.0", "4.17.19", critical))
	e.g.reloadDB()
	if _, err := e.g.Rescan(ctx); err != nil {
		t.Fatal(err)
	}

	var rep Report
	e.api(t, "GET", "report?stale_days=30&base_repository=base/debian&live_tags=prod", "admin", adminPW, nil, &rep)
	if len(rep.Images) != 1 {
		t.Fatalf("report images: %+v", rep.Images)
	}
	ri := rep.Images[0]
	if !ri.Stale || !ri.Grown || !ri.BaseOutdated || ri.Base != "base/debian@"+baseDg || !strings.Contains(ri.NewestBase, "base/debian:12@") ||
		ri.Fixable != 2 || len(ri.LiveTags) != 1 || ri.LiveTags[0] != "prod" || ri.PushFindings != 1 || ri.Findings != 2 || len(ri.Upgrades) != 2 {
		t.Fatalf("report image: %+v", ri)
	}
	if rep.Summary != (Summary{Images: 1, Stale: 1, Grown: 1, BaseOutdated: 1, Fixable: 1, Live: 1}) {
		t.Fatalf("summary: %+v", rep.Summary)
	}
	var tbl bytes.Buffer
	if err := WriteReportTable(&tbl, &rep); err != nil || !strings.Contains(tbl.String(), "stale,findings-grew,base-outdated") || !strings.Contains(tbl.String(), "upgrade lodash to 4.17.19") {
		t.Fatalf("table: %v\n%s", err, tbl.String())
	}

	// The HTML page is self-contained and loads in a real browser.
	var page bytes.Buffer
	if err := WriteReportHTML(&page, &rep); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	for _, bad := range []string{"src=", "href=", "<script", "@import", "url("} {
		if strings.Contains(html, bad) {
			t.Fatalf("HTML is not self-contained: has %q", bad)
		}
	}
	path := filepath.Join(t.TempDir(), "report.html")
	os.WriteFile(path, page.Bytes(), 0o644)
	browser := ""
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		msg := "chromium not installed (apt-get install chromium): the HTML report is not rendered"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir="+t.TempDir(),
		"--enable-logging=stderr", "--v=0", "--dump-dom", "file://"+path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	dom := stdout.String()
	for _, want := range []string{`id="images"`, "<svg", "base outdated", "findings grew", "upgrade lodash 4.17.15 → 4.17.19", `aria-label="Findings by severity over time"`, `aria-label="Images by age"`} {
		if !strings.Contains(dom, want) {
			t.Fatalf("rendered DOM lacks %q:\n%s", want, dom)
		}
	}
	if strings.Contains(stderr.String(), "CONSOLE") || strings.Contains(stderr.String(), "Uncaught") {
		t.Fatalf("the page logged errors:\n%s", stderr.String())
	}
}
