package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/audit"
	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/storage"
	"github.com/moat-dev/moat/internal/store"
)

var zeroTime time.Time

// Manifest media types accepted on push.
const (
	mtOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mtOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mtDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

func isIndex(mt string) bool { return mt == mtOCIIndex || mt == mtDockerList }

// descriptor is an OCI content descriptor.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	URLs         []string          `json:"urls,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Data         []byte            `json:"data,omitempty"`
	Platform     json.RawMessage   `json:"platform,omitempty"`
}

// manifestDoc is the union of image manifests and indexes.
type manifestDoc struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *descriptor       `json:"config"`
	Layers        []descriptor      `json:"layers"`
	Manifests     []descriptor      `json:"manifests"`
	Subject       *descriptor       `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// ParseManifest validates a manifest body pushed with content type ct and
// returns its parsed form. It never panics on untrusted input.
func ParseManifest(ct string, body []byte) (*manifestDoc, error) {
	switch ct {
	case mtOCIManifest, mtOCIIndex, mtDockerManifest, mtDockerList:
	default:
		return nil, fmt.Errorf("unsupported manifest media type %q", ct)
	}
	var m manifestDoc
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest is not valid JSON: %v", err)
	}
	if dec.More() {
		return nil, errors.New("manifest has trailing data after the JSON object")
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("schemaVersion is %d, want 2", m.SchemaVersion)
	}
	if m.MediaType != "" && m.MediaType != ct {
		return nil, fmt.Errorf("mediaType %q in the manifest does not match Content-Type %q", m.MediaType, ct)
	}
	check := func(what string, d *descriptor) error {
		if _, _, err := storage.ParseDigest(d.Digest); err != nil {
			return fmt.Errorf("%s: %v", what, err)
		}
		if d.Size < 0 {
			return fmt.Errorf("%s: negative size %d", what, d.Size)
		}
		if d.MediaType == "" {
			return fmt.Errorf("%s: missing mediaType", what)
		}
		return nil
	}
	if isIndex(ct) {
		if m.Config != nil || len(m.Layers) > 0 {
			return nil, errors.New("an index must not have config or layers")
		}
		for i := range m.Manifests {
			if err := check(fmt.Sprintf("manifests[%d]", i), &m.Manifests[i]); err != nil {
				return nil, err
			}
		}
	} else {
		if m.Config == nil {
			return nil, errors.New("image manifest has no config descriptor")
		}
		if len(m.Manifests) > 0 {
			return nil, errors.New("an image manifest must not list manifests")
		}
		if err := check("config", m.Config); err != nil {
			return nil, err
		}
		for i := range m.Layers {
			if err := check(fmt.Sprintf("layers[%d]", i), &m.Layers[i]); err != nil {
				return nil, err
			}
		}
	}
	if m.Subject != nil {
		if err := check("subject", m.Subject); err != nil {
			return nil, err
		}
	}
	return &m, nil
}

// nonDistributable reports whether a layer need not be pushed.
func nonDistributable(d descriptor) bool {
	return strings.Contains(d.MediaType, "nondistributable") || strings.Contains(d.MediaType, "foreign")
}

func (s *Server) handleManifest(w http.ResponseWriter, r *http.Request, rt route) {
	isDigest := strings.Contains(rt.ref, ":")
	if isDigest {
		if _, _, err := storage.ParseDigest(rt.ref); err != nil {
			writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error())
			return
		}
	} else if err := ValidateTag(rt.ref); err != nil {
		code := codeManifestInvalid
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			code = codeManifestUnknown
		}
		writeError(w, http.StatusBadRequest, code, err.Error())
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.getManifest(w, r, rt)
	case http.MethodPut:
		s.putManifest(w, r, rt, isDigest)
	case http.MethodDelete:
		s.deleteManifest(w, r, rt, isDigest)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, r.Method+" is not supported on manifests")
	}
}

func (s *Server) getManifest(w http.ResponseWriter, r *http.Request, rt route) {
	p, ok := s.authorize(w, r, audit.ActionPull, need{rt.name, []string{auth.ActionPull}})
	if !ok {
		return
	}
	repo, err := s.Store.RepoByName(r.Context(), rt.name)
	if err != nil {
		writeError(w, http.StatusNotFound, codeManifestUnknown, "manifest "+rt.ref+" unknown: repository "+rt.name+" has no content")
		return
	}
	m, err := s.Store.GetManifest(r.Context(), repo.ID, rt.ref, r.Method == http.MethodGet)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeManifestUnknown, "manifest "+rt.ref+" unknown to repository "+rt.name)
		return
	}
	if err != nil {
		internalError(w, err)
		return
	}
	sigDetail := ""
	if r.Method == http.MethodGet {
		var ok bool
		if ok, sigDetail = s.checkPullSignature(w, r, p, rt, repo, m); !ok {
			return
		}
	}
	if r.Method == http.MethodGet && !s.checkImageGate(w, r, p, rt.name, m) {
		return
	}
	h := w.Header()
	h.Set("Content-Type", m.MediaType)
	h.Set("Docker-Content-Digest", m.Digest)
	h.Set("ETag", `"`+m.Digest+`"`)
	h.Set("Content-Length", strconv.FormatInt(m.Size, 10))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	tag := ""
	if !strings.Contains(rt.ref, ":") {
		tag = rt.ref
	}
	detail := "manifest"
	if sigDetail != "" {
		detail += "; " + sigDetail
	}
	s.record(r, p, audit.ActionPull, rt.name, m.Digest, tag, detail)
	w.WriteHeader(http.StatusOK)
	w.Write(m.Content)
}

func (s *Server) putManifest(w http.ResponseWriter, r *http.Request, rt route, isDigest bool) {
	p, ok := s.authorize(w, r, audit.ActionPush, need{rt.name, []string{auth.ActionPull, auth.ActionPush}})
	if !ok {
		return
	}
	if r.ContentLength > s.MaxManifestSize {
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("manifest of %d bytes exceeds the limit of %d", r.ContentLength, s.MaxManifestSize))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.MaxManifestSize+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, "reading manifest: "+err.Error())
		return
	}
	if int64(len(body)) > s.MaxManifestSize {
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("manifest exceeds the limit of %d bytes", s.MaxManifestSize))
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "" {
		// Fall back to the mediaType field, as some clients omit the header.
		var probe struct {
			MediaType string `json:"mediaType"`
		}
		json.Unmarshal(body, &probe)
		ct = probe.MediaType
	}
	doc, err := ParseManifest(ct, body)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, err.Error())
		return
	}
	alg := "sha256"
	var tags []string
	if isDigest {
		alg, _, _ = storage.ParseDigest(rt.ref)
	} else {
		tags = append(tags, rt.ref)
	}
	dg := storage.DigestOf(alg, body)
	if isDigest && dg != rt.ref {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("manifest digest is %s, not %s", dg, rt.ref))
		return
	}
	for _, t := range r.URL.Query()["tag"] {
		if err := ValidateTag(t); err != nil {
			writeError(w, http.StatusBadRequest, codeManifestInvalid, err.Error())
			return
		}
		tags = append(tags, t)
	}
	repo, ok := s.ensureRepo(w, r, p, rt.name)
	if !ok {
		return
	}
	var refs []string
	if isIndex(ct) {
		for _, d := range doc.Manifests {
			refs = append(refs, d.Digest)
		}
	} else {
		for i, d := range append([]descriptor{*doc.Config}, doc.Layers...) {
			refs = append(refs, d.Digest)
			if nonDistributable(d) {
				continue
			}
			size, err := s.Store.BlobSize(r.Context(), repo.ID, d.Digest)
			if errors.Is(err, store.ErrNotFound) && i > 0 && !s.StrictManifests {
				// OCI 1.1 allows sparse manifests (layers not pushed);
				// the config must always be present.
				continue
			}
			if errors.Is(err, store.ErrNotFound) {
				writeError(w, http.StatusBadRequest, codeManifestBlobUnknown, "blob "+d.Digest+" referenced by the manifest is not in repository "+rt.name)
				return
			}
			if err != nil {
				internalError(w, err)
				return
			}
			if size != d.Size {
				writeError(w, http.StatusBadRequest, codeManifestInvalid, fmt.Sprintf("descriptor %s says size %d, the blob has %d bytes", d.Digest, d.Size, size))
				return
			}
		}
	}
	m := store.Manifest{Digest: dg, MediaType: ct, Size: int64(len(body)), Content: body, ArtifactType: doc.ArtifactType}
	if m.ArtifactType == "" && doc.Config != nil {
		m.ArtifactType = doc.Config.MediaType
	}
	if doc.Subject != nil {
		m.Subject = doc.Subject.Digest
	}
	if len(doc.Annotations) > 0 {
		a, _ := json.Marshal(doc.Annotations)
		m.Annotations = string(a)
	}
	proj, err := s.Auth.Project(r.Context(), auth.ProjectOf(rt.name))
	if err != nil {
		internalError(w, err)
		return
	}
	immutable := proj != nil && proj.ImmutableTags
	if exists, _ := s.Store.HasManifest(r.Context(), repo.ID, dg); !exists && !s.quotaOK(w, r, repo.ProjectID, rt.name, m.Size) {
		return
	}
	s.gcMu.RLock()
	err = s.Store.PutManifest(r.Context(), repo.ID, m, refs, tags, immutable)
	s.gcMu.RUnlock()
	var ite *store.ImmutableTagError
	if errors.As(err, &ite) {
		s.deny(r, p, audit.ActionPush, []need{{rt.name, nil}}, ite.Error())
		writeError(w, http.StatusForbidden, codeDenied, ite.Error())
		return
	}
	if err != nil {
		internalError(w, err)
		return
	}
	s.notifyPush(r, repo, rt.name, &m)
	for _, t := range tags {
		s.record(r, p, audit.ActionPush, rt.name, dg, t, "manifest")
	}
	if len(tags) == 0 {
		s.record(r, p, audit.ActionPush, rt.name, dg, "", "manifest")
	}
	h := w.Header()
	h.Set("Location", "/v2/"+rt.name+"/manifests/"+dg)
	h.Set("Docker-Content-Digest", dg)
	if m.Subject != "" {
		h.Set("OCI-Subject", m.Subject)
	}
	if q := r.URL.Query()["tag"]; len(q) > 0 {
		h.Set("OCI-Tag", strings.Join(q, ","))
	}
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) deleteManifest(w http.ResponseWriter, r *http.Request, rt route, isDigest bool) {
	p, ok := s.authorize(w, r, audit.ActionDelete, need{rt.name, []string{auth.ActionDelete}})
	if !ok {
		return
	}
	repo, err := s.Store.RepoByName(r.Context(), rt.name)
	if err != nil {
		writeError(w, http.StatusNotFound, codeManifestUnknown, "manifest "+rt.ref+" unknown to repository "+rt.name)
		return
	}
	proj, err := s.Auth.Project(r.Context(), auth.ProjectOf(rt.name))
	if err != nil {
		internalError(w, err)
		return
	}
	immutable := proj != nil && proj.ImmutableTags
	var dg, tag string
	if isDigest {
		dg = rt.ref
		err = s.Store.DeleteManifest(r.Context(), repo.ID, rt.ref, immutable)
	} else {
		tag = rt.ref
		err = s.Store.DeleteTag(r.Context(), repo.ID, rt.ref, immutable)
	}
	var ite *store.ImmutableTagError
	switch {
	case errors.As(err, &ite):
		s.deny(r, p, audit.ActionDelete, []need{{rt.name, nil}}, ite.Error())
		writeError(w, http.StatusForbidden, codeDenied, ite.Error())
		return
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, codeManifestUnknown, "manifest "+rt.ref+" unknown to repository "+rt.name)
		return
	case err != nil:
		internalError(w, err)
		return
	}
	s.record(r, p, audit.ActionDelete, rt.name, dg, tag, "manifest")
	w.WriteHeader(http.StatusAccepted)
}

// pagination parses ?n= and ?last=.
func pagination(q url.Values) (n int, last string, err error) {
	n = -1
	if v := q.Get("n"); v != "" {
		n, err = strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, "", fmt.Errorf("n=%q: want a non-negative integer", v)
		}
	}
	return n, q.Get("last"), nil
}

func nextLink(path string, n int, last string) string {
	q := url.Values{"n": {strconv.Itoa(n)}, "last": {last}}
	return fmt.Sprintf(`<%s?%s>; rel="next"`, path, q.Encode())
}

func (s *Server) handleTags(w http.ResponseWriter, r *http.Request, rt route) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "use GET")
		return
	}
	if _, ok := s.authorize(w, r, "", need{rt.name, []string{auth.ActionPull}}); !ok {
		return
	}
	n, last, err := pagination(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, codeUnsupported, err.Error())
		return
	}
	repo, err := s.Store.RepoByName(r.Context(), rt.name)
	if err != nil {
		writeError(w, http.StatusNotFound, codeNameUnknown, "repository "+rt.name+" is not known")
		return
	}
	tags := []string{}
	if n != 0 {
		limit := 0
		if n > 0 {
			limit = n + 1
		}
		got, err := s.Store.ListTags(r.Context(), repo.ID, last, limit)
		if err != nil {
			internalError(w, err)
			return
		}
		if n > 0 && len(got) > n {
			got = got[:n]
			w.Header().Set("Link", nextLink(r.URL.Path, n, got[n-1]))
		}
		tags = append(tags, got...)
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": rt.name, "tags": tags})
}

func (s *Server) handleCatalog(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "use GET")
		return
	}
	p, err := s.principal(r)
	if err != nil || (p.Kind == auth.KindAnonymous && !s.Auth.AllowAnonymous) {
		s.challenge(w, r, []string{"registry:catalog:*"}, "authentication required")
		return
	}
	n, last, err := pagination(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, codeUnsupported, err.Error())
		return
	}
	// A token grants the catalog scope; what it lists is filtered by the
	// account's own pull rights.
	acct := *p
	acct.Granted = nil
	repos := []string{}
	more := false
	for n != 0 {
		batch, err := s.Store.ListRepos(r.Context(), last, 500)
		if err != nil {
			internalError(w, err)
			return
		}
		for _, name := range batch {
			last = name
			if ok, _ := s.Auth.Can(r.Context(), &acct, name, auth.ActionPull); !ok {
				continue
			}
			if n > 0 && len(repos) == n {
				more = true
				break
			}
			repos = append(repos, name)
		}
		if more || len(batch) < 500 {
			break
		}
	}
	if more {
		w.Header().Set("Link", nextLink(r.URL.Path, n, repos[len(repos)-1]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"repositories": repos})
}

func (s *Server) handleReferrers(w http.ResponseWriter, r *http.Request, rt route) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "use GET")
		return
	}
	if _, ok := s.authorize(w, r, "", need{rt.name, []string{auth.ActionPull}}); !ok {
		return
	}
	if _, _, err := storage.ParseDigest(rt.ref); err != nil {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error())
		return
	}
	filter := r.URL.Query().Get("artifactType")
	out := []descriptor{}
	if repo, err := s.Store.RepoByName(r.Context(), rt.name); err == nil {
		ms, err := s.Store.Referrers(r.Context(), repo.ID, rt.ref)
		if err != nil {
			internalError(w, err)
			return
		}
		for _, m := range ms {
			if filter != "" && m.ArtifactType != filter {
				continue
			}
			d := descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: m.Size, ArtifactType: m.ArtifactType}
			if m.Annotations != "" {
				json.Unmarshal([]byte(m.Annotations), &d.Annotations)
			}
			out = append(out, d)
		}
	}
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.Header().Set("Content-Type", mtOCIIndex)
	w.WriteHeader(http.StatusOK)
	json.NewEncoder(w).Encode(map[string]any{"schemaVersion": 2, "mediaType": mtOCIIndex, "manifests": out})
}
