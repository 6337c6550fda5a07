package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/moat-dev/moat/internal/audit"
	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/signing"
	"github.com/moat-dev/moat/internal/store"
)

// Annotations on what the registry key signed: on the attestation layers
// (in the cosign .att tag) and on the referrer manifests, so that a
// re-scan replaces the registry's own earlier attestation of a type and
// leaves every other attestation (moat attest, cosign attest) alone.
const (
	AnnotationSigner        = "dev.moat.signer"
	AnnotationPredicateType = "dev.moat.predicate-type"
	signerRegistry          = "registry"
)

// attest signs, with the registry key (Options.AttestKey), the image's
// CycloneDX SBOM and, when it was matched against a database, its
// vulnerability findings (cosign's vuln predicate, with the scan's times
// and the database version), as in-toto statements in DSSE envelopes —
// the predicate types `moat attest --type sbom|vuln` writes — and stores
// each the way moat attest does: a layer of the cosign sha256-<hex>.att
// tag and an OCI 1.1 referrer. A later scan of the same image replaces the
// registry's previous attestation of each type. Every signature is an
// audit event.
func (g *Guard) attest(ctx context.Context, j *job, m *store.Manifest, bom []byte, mr *match.Result, started time.Time) error {
	if g.o.AttestKey == nil || signing.IsSigningArtifact(m.Content) {
		return nil
	}
	type one struct {
		predicateType string
		predicate     json.RawMessage
	}
	todo := []one{{signing.PredicateCycloneDX, bom}}
	if mr != nil {
		pred, err := signing.VulnPredicate(signing.VulnScan{ScannerURI: "https://moat.dev", ScannerVersion: g.o.Version,
			DBURI: "https://osv.dev", DBVersion: g.dbVersion(), Result: mr, Started: started, Finished: time.Now()})
		if err != nil {
			return err
		}
		todo = append(todo, one{signing.PredicateVuln, pred})
	}
	for _, a := range todo {
		if err := g.putAttestation(ctx, j, m, a.predicateType, a.predicate); err != nil {
			return fmt.Errorf("%s attestation: %w", a.predicateType, err)
		}
	}
	return nil
}

// dbVersion is the vulnerability database's version: each ecosystem with
// when it was updated.
func (g *Guard) dbVersion() string {
	g.dbMu.RLock()
	defer g.dbMu.RUnlock()
	if g.db == nil {
		return ""
	}
	var parts []string
	for _, md := range g.db.Meta() {
		parts = append(parts, md.Ecosystem+"@"+md.Updated.UTC().Format(time.RFC3339))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (g *Guard) putAttestation(ctx context.Context, j *job, m *store.Manifest, predicateType string, predicate json.RawMessage) error {
	signer := &signing.AuditedSigner{Signer: g.o.AttestKey, Purpose: predicateType, Record: func(purpose, fp string) {
		if g.o.Audit != nil {
			g.o.Audit.Record(audit.Event{Actor: "moat", ActorKind: audit.ActorKindSystem, Action: audit.ActionKeySign, Repository: j.repo,
				Digest: j.digest, Allowed: true, Detail: "registry key " + fp + " signed the " + purpose + " attestation of a scan on push"})
		}
	}}
	art, err := signing.NewAttestation(signer, j.repo, j.digest, signing.AttestOptions{PredicateType: predicateType, Predicate: predicate})
	if err != nil {
		return err
	}
	art.Annotations[AnnotationSigner] = signerRegistry
	ours := func(ann map[string]string, pt string) bool {
		return ann[AnnotationSigner] == signerRegistry && pt == predicateType
	}

	// The referrer first (a malformed cosign tag someone pushed must not
	// keep it out); then the registry's earlier referrer of this type goes.
	h, err := v1.NewHash(m.Digest)
	if err != nil {
		return err
	}
	subject := v1.Descriptor{MediaType: types.MediaType(m.MediaType), Digest: h, Size: m.Size}
	ref, err := signing.LayReferrer(subject, art, map[string]string{AnnotationSigner: signerRegistry, AnnotationPredicateType: predicateType,
		"dev.moat.generator": "moat serve"}, time.Now())
	if err != nil {
		return err
	}
	if err := g.storeLaid(ctx, j.repoID, ref, "", ""); err != nil {
		return err
	}
	olds, err := g.o.Store.Referrers(ctx, j.repoID, j.digest)
	if err != nil {
		return err
	}
	for _, o := range olds {
		var ann map[string]string
		if o.Digest == ref.Digest || o.ArtifactType != signing.AttestationArtifactType || json.Unmarshal([]byte(o.Annotations), &ann) != nil {
			continue
		}
		if ours(ann, ann[AnnotationPredicateType]) {
			if err := g.o.Store.DeleteManifest(ctx, j.repoID, o.Digest, false); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
	}

	// The cosign tag: the registry's earlier layer of this type is
	// replaced, every other layer kept. The tag is updated only if it
	// still points where it was read (a user may attach an attestation at
	// the same moment): on a race, read again and re-lay.
	tag := signing.AttestationTag(j.digest)
	for attempt := 0; ; attempt++ {
		var prev []byte
		prevDigest := ""
		if pm, err := g.o.Store.GetManifest(ctx, j.repoID, tag, true); err == nil {
			prev, prevDigest = pm.Content, pm.Digest
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		laid, err := signing.LayAttestationTag(j.digest, prev, art, func(l v1.Descriptor) bool {
			return ours(l.Annotations, l.Annotations[signing.PredicateTypeAnnotation])
		})
		if err != nil {
			return fmt.Errorf("%s: %w (the referrer was stored)", tag, err)
		}
		err = g.storeLaid(ctx, j.repoID, laid, tag, prevDigest)
		if errors.Is(err, store.ErrTagMoved) && attempt < 10 {
			continue
		}
		if err != nil {
			return err
		}
		// The tag's previous manifest is now untagged: remove it (its
		// blobs go at the next garbage collection) unless another tag
		// still names it.
		if prevDigest != "" && prevDigest != laid.Digest {
			var still *store.ImmutableTagError
			if err := g.o.Store.DeleteManifest(ctx, j.repoID, prevDigest, true); err != nil && !errors.Is(err, store.ErrNotFound) && !errors.As(err, &still) {
				return err
			}
		}
		return nil
	}
}

// storeLaid writes an artifact's blobs, then its manifest; with a tag, the
// tag is pointed at it only if it still points at expect (else
// store.ErrTagMoved).
func (g *Guard) storeLaid(ctx context.Context, repoID int64, l *signing.Laid, tag, expect string) error {
	for _, b := range l.Blobs {
		if _, err := g.putBlob(ctx, repoID, b.Content); err != nil {
			return err
		}
	}
	var doc v1.Manifest
	if err := json.Unmarshal(l.Manifest, &doc); err != nil {
		return err
	}
	refs := []string{doc.Config.Digest.String()}
	for _, d := range doc.Layers {
		refs = append(refs, d.Digest.String())
	}
	mf := store.Manifest{Digest: l.Digest, MediaType: l.MediaType, ArtifactType: l.ArtifactType, Subject: l.Subject,
		Size: int64(len(l.Manifest)), Content: l.Manifest}
	if len(l.Annotations) > 0 {
		a, _ := json.Marshal(l.Annotations)
		mf.Annotations = string(a)
	}
	if tag == "" {
		return g.o.Store.PutManifest(ctx, repoID, mf, refs, nil, false)
	}
	return g.o.Store.PutManifestIfTag(ctx, repoID, mf, refs, tag, expect)
}

// refreshVulnAttestation re-signs the vulnerability attestation of an
// image whose findings a re-match changed, so that the registry's
// attestation always states the latest findings (with the re-match's
// times and database version). Failures are logged: the findings are
// stored either way.
func (g *Guard) refreshVulnAttestation(ctx context.Context, repo, digest string, mr *match.Result, started time.Time) {
	if g.o.AttestKey == nil || mr == nil {
		return
	}
	err := func() error {
		rp, err := g.o.Store.RepoByName(ctx, repo)
		if err != nil {
			return err
		}
		m, err := g.o.Store.GetManifest(ctx, rp.ID, digest, true)
		if err != nil {
			return err
		}
		pred, err := signing.VulnPredicate(signing.VulnScan{ScannerURI: "https://moat.dev", ScannerVersion: g.o.Version,
			DBURI: "https://osv.dev", DBVersion: g.dbVersion(), Result: mr, Started: started, Finished: time.Now()})
		if err != nil {
			return err
		}
		return g.putAttestation(ctx, &job{repo: repo, repoID: rp.ID, digest: digest}, m, signing.PredicateVuln, pred)
	}()
	if err != nil && !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
		g.o.Log.Warn("guard: refreshing the signed vulnerability attestation failed", "repository", repo, "digest", digest, "error", err.Error())
	}
}
