package guard

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/moat-dev/moat/internal/audit"
	"github.com/moat-dev/moat/internal/signing"
	"github.com/moat-dev/moat/internal/store"
	"github.com/moat-dev/moat/internal/testenv"
)

type adminKeychain struct{}

func (adminKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return &authn.Basic{Username: "admin", Password: adminPW}, nil
}

// TestSignedAttestationsOnPush: with a registry key, scan on push stores
// the SBOM and the vulnerability findings as DSSE in-toto attestations
// signed by it, found by moat verify-attestation and by the real cosign
// binary (offline); each signature is audited; a later scan of the image
// replaces the registry's attestations and keeps other signers' ones.
func TestSignedAttestationsOnPush(t *testing.T) {
	ctx := context.Background()
	db := t.TempDir()
	importDB(t, db, osvRecord("GHSA-p6mc-m468-83gw", "CVE-2020-8203", "lodash", "3.7.0", "4.17.19", critical))
	key, _ := signing.GenerateKey("")
	e := start(t, db, func(o *Options) { o.AttestKey = key })
	dg := e.push(t, "team/app:1.0", appImage(t, "4.17.15"))
	if im := e.waitStatus(t, "team/app", dg); im.Status != "scanned" {
		t.Fatalf("scan: %+v", im)
	}
	dir := t.TempDir()
	pubPEM, _ := signing.MarshalPublicKey(key.Public())
	pubFile := filepath.Join(dir, "registry.pub")
	os.WriteFile(pubFile, pubPEM, 0o644)
	keys, err := signing.LoadPublicKeys(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	rem := &signing.Remote{Insecure: true, Keychain: adminKeychain{}}
	ref := e.host + "/team/app@" + dg
	verify := func(pt string) *signing.AttestationsResult {
		t.Helper()
		res, err := rem.VerifyAttestations(ctx, ref, keys, pt)
		if err != nil {
			t.Fatalf("moat verify-attestation %s: %v %+v", pt, err, res)
		}
		return res
	}
	sbomRes := verify(signing.PredicateCycloneDX)
	if len(sbomRes.Attestations) != 1 || !strings.Contains(string(sbomRes.Attestations[0].Predicate), `"lodash"`) {
		t.Fatalf("SBOM attestation: %+v", sbomRes)
	}
	// Both the cosign tag and the referrer carry it.
	if src := strings.Join(sbomRes.Attestations[0].Sources, " "); !strings.Contains(src, "tag ") || !strings.Contains(src, "referrer ") {
		t.Fatalf("SBOM attestation sources: %v", sbomRes.Attestations[0].Sources)
	}
	vuln := verify(signing.PredicateVuln)
	var pred struct {
		Scanner struct {
			URI string `json:"uri"`
			DB  struct {
				Version string `json:"version"`
			} `json:"db"`
			Result json.RawMessage `json:"result"`
		} `json:"scanner"`
		Metadata struct {
			Finished string `json:"scanFinishedOn"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(vuln.Attestations[0].Predicate, &pred); err != nil || !strings.Contains(string(pred.Scanner.Result), "CVE-2020-8203") ||
		!strings.Contains(pred.Scanner.DB.Version, "npm@") || pred.Metadata.Finished == "" {
		t.Fatalf("vuln predicate: %v %s", err, vuln.Attestations[0].Predicate)
	}
	// Another key does not verify them.
	other, _ := signing.GenerateKey("")
	if _, err := rem.VerifyAttestations(ctx, ref, []signing.PublicKey{{Key: other.Public(), Fingerprint: signing.Fingerprint(other.Public())}}, ""); !signing.IsVerificationError(err) {
		t.Fatalf("verified with another key: %v", err)
	}

	// The real cosign verifies both, offline.
	cosign := testenv.Tool(t, "cosign", "scripts/peers/cosign.sh builds it")
	home := t.TempDir()
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{e.host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte("admin:" + adminPW))}}})
	os.MkdirAll(filepath.Join(home, "docker"), 0o700)
	os.WriteFile(filepath.Join(home, "docker", "config.json"), cfg, 0o600)
	root := filepath.Join(home, "trusted_root.json")
	os.WriteFile(root, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}`), 0o644)
	for _, typ := range []string{"cyclonedx", "vuln"} {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		cmd := exec.CommandContext(cctx, cosign, "verify-attestation", "--key", pubFile, "--insecure-ignore-tlog", "--allow-http-registry",
			"--trusted-root", root, "--type", typ, ref)
		cmd.Env = []string{"HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, "docker"), "TUF_ROOT=" + filepath.Join(home, "tuf"), "PATH=/usr/bin:/bin", "SIGSTORE_NO_CACHE=true"}
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), "payload") {
			t.Fatalf("cosign verify-attestation --type %s: %v\n%s", typ, err, out)
		}
	}

	// Every signature is in the audit log.
	e.inst.Audit.Flush()
	evs, _ := e.inst.Store.ListEvents(ctx, store.EventFilter{Action: audit.ActionKeySign})
	if len(evs) != 2 || evs[0].Digest != dg || evs[0].ActorKind != audit.ActorKindSystem || !strings.Contains(evs[0].Detail, signing.Fingerprint(key.Public())) {
		t.Fatalf("audit: %+v", evs)
	}

	// Someone else attests too; then the image is scanned again: the
	// registry's two attestations are replaced, the other one stays.
	if _, err := rem.Attest(ctx, ref, other, signing.AttestOptions{PredicateType: signing.PredicateVuln, Predicate: json.RawMessage(`{"scanner":{"uri":"other"}}`)}); err != nil {
		t.Fatal(err)
	}
	tagManifests := func() int {
		n := 0
		e.inst.Store.ForEachManifest(ctx, func(repo string, _ int64, sm *store.Manifest) error {
			if sm.Subject == "" && signing.IsSigningArtifact(sm.Content) && strings.Contains(string(sm.Content), signing.DSSEMediaType) {
				n++
			}
			return nil
		})
		return n
	}
	before := tagManifests()
	rp, _ := e.inst.Store.RepoByName(ctx, "team/app")
	if err := e.g.scanImage(ctx, &job{repo: "team/app", repoID: rp.ID, digest: dg}); err != nil {
		t.Fatal(err)
	}
	tagMan, err := e.inst.Store.GetManifest(ctx, rp.ID, signing.AttestationTag(dg), true)
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	json.Unmarshal(tagMan.Content, &m)
	if n := tagManifests(); n != before {
		t.Fatalf("%d attestation tag manifests stored, %d before the re-scan (earlier versions not removed)", n, before)
	}
	if len(m.Layers) != 3 {
		t.Fatalf("attestation tag after a re-scan holds %d layers, want 3 (registry sbom and vuln, other vuln)", len(m.Layers))
	}
	refs, _ := e.inst.Store.Referrers(ctx, rp.ID, dg)
	n := 0
	for _, r := range refs {
		if r.ArtifactType == signing.AttestationArtifactType {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d attestation referrers after a re-scan, want 3", n)
	}
	if res := verify(signing.PredicateVuln); len(res.Attestations) != 2 || !res.Verified {
		t.Fatalf("after re-scan: %+v", res)
	}

	// A database update that changes the findings re-signs the
	// registry's vulnerability attestation (replacing it).
	importDB(t, db, osvRecord("GHSA-p6mc-m468-83gw", "CVE-2020-8203", "lodash", "3.7.0", "4.17.19", critical),
		osvRecord("GHSA-left-pad-0001", "CVE-2099-0001", "left-pad", "1.0.0", "1.3.1", critical))
	if !e.g.reloadDB() {
		t.Fatal("database change not seen")
	}
	if res, err := e.g.Rescan(ctx); err != nil || res.Changed != 1 {
		t.Fatalf("rescan: %+v %v", res, err)
	}
	refreshed := verify(signing.PredicateVuln)
	fresh := 0
	for _, a := range refreshed.Attestations {
		if a.Verified && a.Key == signing.Fingerprint(key.Public()) && strings.Contains(string(a.Predicate), "CVE-2099-0001") {
			fresh++
		}
	}
	if fresh != 1 || len(refreshed.Attestations) != 2 {
		t.Fatalf("after the database update: %d refreshed of %+v", fresh, refreshed.Attestations)
	}

	// The attestation tag is not an image: a reconcile does not list it.
	if _, err := e.g.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		ims, _ := e.g.Images(ctx, "", nil)
		if len(ims) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("images: %+v", ims)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The pulled artifacts are what the referrers API lists.
	h, _ := v1.NewHash(dg)
	if _, err := remote.Referrers(e.ref(t, "team/app@"+dg).Context().Digest(h.String()), basic("admin", adminPW)); err != nil {
		t.Fatal(err)
	}
}
