package signing

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// VulnScan is the input of VulnPredicate: a scan's findings at a date and
// database version.
type VulnScan struct {
	ScannerURI, ScannerVersion string
	DBURI, DBVersion           string
	Result                     any // the findings document (moat's match result)
	Started, Finished          time.Time
}

// VulnPredicate builds cosign's vulnerability attestation predicate
// (predicate type https://cosign.sigstore.dev/attestation/vuln/v1).
func VulnPredicate(v VulnScan) (json.RawMessage, error) {
	if v.Result == nil {
		return nil, errors.New("vuln predicate: no scan result")
	}
	p := map[string]any{
		"invocation": map[string]any{"parameters": nil, "uri": "", "event_id": "", "builder.id": ""},
		"scanner": map[string]any{
			"uri":     v.ScannerURI,
			"version": v.ScannerVersion,
			"db":      map[string]any{"uri": v.DBURI, "version": v.DBVersion},
			"result":  v.Result,
		},
		"metadata": map[string]any{
			"scanStartedOn":  v.Started.UTC().Format(time.RFC3339),
			"scanFinishedOn": v.Finished.UTC().Format(time.RFC3339),
		},
	}
	return json.Marshal(p)
}

// Provenance are the build facts of a SLSA provenance v1 predicate.
type Provenance struct {
	SourceRepo string // e.g. https://github.com/org/repo or git+https://...
	Commit     string // full git commit (hex)
	BuilderID  string // URI of the builder
	BuildType  string // URI; DefaultBuildType when empty
	// Layers are the image's layer digests, recorded as byproducts so the
	// provenance says which layers the build produced.
	Layers            []ProvenanceLayer
	Started, Finished time.Time
}

// ProvenanceLayer is one layer of the built image.
type ProvenanceLayer struct{ Digest, MediaType string }

// DefaultBuildType is the buildType moat records when none is given.
const DefaultBuildType = "https://moat.dev/provenance/container-image/v1"

var commitRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`) })

// ProvenancePredicate builds a SLSA provenance v1 predicate
// (https://slsa.dev/provenance/v1) from build facts.
func ProvenancePredicate(p Provenance) (json.RawMessage, error) {
	if p.SourceRepo == "" || p.Commit == "" || p.BuilderID == "" {
		return nil, errors.New("provenance: --source-repo, --commit and --builder-id are required")
	}
	if !commitRe().MatchString(strings.ToLower(p.Commit)) {
		return nil, fmt.Errorf("provenance: commit %q is not a full 40- or 64-character hex git commit", p.Commit)
	}
	if u, err := url.Parse(p.BuilderID); err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("provenance: builder id %q is not a URI", p.BuilderID)
	}
	if u, err := url.Parse(p.SourceRepo); err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("provenance: source repository %q is not a URI", p.SourceRepo)
	}
	bt := p.BuildType
	if bt == "" {
		bt = DefaultBuildType
	}
	src := p.SourceRepo
	if !strings.HasPrefix(src, "git+") {
		src = "git+" + src
	}
	commit := strings.ToLower(p.Commit)
	dep := map[string]any{"uri": src + "@" + commit, "digest": map[string]string{"gitCommit": commit}}
	run := map[string]any{"builder": map[string]any{"id": p.BuilderID}}
	md := map[string]any{}
	if !p.Started.IsZero() {
		md["startedOn"] = p.Started.UTC().Format(time.RFC3339)
	}
	if !p.Finished.IsZero() {
		md["finishedOn"] = p.Finished.UTC().Format(time.RFC3339)
	}
	if len(md) > 0 {
		run["metadata"] = md
	}
	if len(p.Layers) > 0 {
		var bps []map[string]any
		for i, l := range p.Layers {
			alg, hex, ok := strings.Cut(l.Digest, ":")
			if !ok {
				return nil, fmt.Errorf("provenance: layer %q is not a digest", l.Digest)
			}
			bp := map[string]any{"name": fmt.Sprintf("layer-%d", i), "digest": map[string]string{alg: hex}}
			if l.MediaType != "" {
				bp["mediaType"] = l.MediaType
			}
			bps = append(bps, bp)
		}
		run["byproducts"] = bps
	}
	pred := map[string]any{
		"buildDefinition": map[string]any{
			"buildType":            bt,
			"externalParameters":   map[string]any{"source": map[string]any{"uri": src, "digest": map[string]string{"gitCommit": commit}}},
			"resolvedDependencies": []any{dep},
		},
		"runDetails": run,
	}
	return json.Marshal(pred)
}
