package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/moat-dev/moat/internal/audit"
	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/storage"
	"github.com/moat-dev/moat/internal/store"
)

func (s *Server) handleBlob(w http.ResponseWriter, r *http.Request, rt route) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.getBlob(w, r, rt)
	case http.MethodDelete:
		s.deleteBlob(w, r, rt)
	default:
		w.Header().Set("Allow", "GET, HEAD, DELETE")
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, r.Method+" is not supported on blobs")
	}
}

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request, rt route) {
	p, ok := s.authorize(w, r, audit.ActionPull, need{rt.name, []string{auth.ActionPull}})
	if !ok {
		return
	}
	if _, _, err := storage.ParseDigest(rt.ref); err != nil {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error())
		return
	}
	repo, err := s.Store.RepoByName(r.Context(), rt.name)
	if err != nil {
		writeError(w, http.StatusNotFound, codeBlobUnknown, "blob unknown to repository "+rt.name)
		return
	}
	size, err := s.Store.BlobSize(r.Context(), repo.ID, rt.ref)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeBlobUnknown, "blob "+rt.ref+" unknown to repository "+rt.name)
		return
	}
	if err != nil {
		internalError(w, err)
		return
	}
	h := w.Header()
	h.Set("Docker-Content-Digest", rt.ref)
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+rt.ref+`"`)
	h.Set("Accept-Ranges", "bytes")
	if r.Method == http.MethodHead {
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	c, err := s.Blobs.Open(r.Context(), rt.ref)
	if errors.Is(err, storage.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeBlobUnknown, "blob "+rt.ref+" content is missing from storage")
		return
	}
	if err != nil {
		internalError(w, err)
		return
	}
	defer c.Close()
	s.record(r, p, audit.ActionPull, rt.name, rt.ref, "", "blob")
	http.ServeContent(w, r, "", zeroTime, c)
}

func (s *Server) deleteBlob(w http.ResponseWriter, r *http.Request, rt route) {
	p, ok := s.authorize(w, r, audit.ActionDelete, need{rt.name, []string{auth.ActionDelete}})
	if !ok {
		return
	}
	if _, _, err := storage.ParseDigest(rt.ref); err != nil {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error())
		return
	}
	repo, err := s.Store.RepoByName(r.Context(), rt.name)
	if err == nil {
		err = s.Store.UnlinkBlob(r.Context(), repo.ID, rt.ref)
	}
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeBlobUnknown, "blob "+rt.ref+" unknown to repository "+rt.name)
		return
	}
	if err != nil {
		internalError(w, err)
		return
	}
	s.record(r, p, audit.ActionDelete, rt.name, rt.ref, "", "blob")
	w.WriteHeader(http.StatusAccepted)
}

// session is an in-progress upload. Its bytes live in UploadDir/<id>; its
// offset and sha256 state are persisted after every chunk so it resumes
// after a restart.
type session struct {
	mu     sync.Mutex
	id     string
	repo   string
	path   string
	offset int64
	h      hash.Hash // sha256 over the bytes so far
	gone   bool
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// loadSession returns the live session for id, restoring it from the
// database after a restart (truncating bytes written after the last
// recorded chunk).
func (s *Server) loadSession(ctx context.Context, id, repo string) (*session, error) {
	if v, ok := s.sessions.Load(id); ok {
		ss := v.(*session)
		if ss.repo != repo {
			return nil, store.ErrNotFound
		}
		return ss, nil
	}
	if !validUploadID(id) {
		return nil, store.ErrNotFound
	}
	u, err := s.Store.GetUpload(ctx, id)
	if err != nil {
		return nil, err
	}
	if u.Repo != repo {
		return nil, store.ErrNotFound
	}
	ss := &session{id: id, repo: repo, path: filepath.Join(s.UploadDir, id), offset: u.Offset, h: sha256.New()}
	if len(u.HashState) > 0 {
		if err := ss.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.HashState); err != nil {
			return nil, fmt.Errorf("upload %s: corrupt hash state: %w", id, err)
		}
	}
	fi, err := os.Stat(ss.path)
	if err != nil || fi.Size() < u.Offset {
		s.Store.DeleteUpload(ctx, id)
		os.Remove(ss.path)
		return nil, store.ErrNotFound
	}
	if fi.Size() > u.Offset {
		if err := os.Truncate(ss.path, u.Offset); err != nil {
			return nil, err
		}
	}
	v, _ := s.sessions.LoadOrStore(id, ss)
	return v.(*session), nil
}

func validUploadID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func newUploadID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func (s *Server) uploadLocation(name, id string) string {
	return "/v2/" + name + "/blobs/uploads/" + id
}

func setRange(w http.ResponseWriter, offset int64) {
	if offset > 0 {
		w.Header().Set("Range", fmt.Sprintf("0-%d", offset-1))
	} else {
		w.Header().Set("Range", "0-0")
	}
}

// handleUploadStart serves POST /v2/<name>/blobs/uploads/: a new session,
// a monolithic upload (?digest=), or a cross-repository mount.
func (s *Server) handleUploadStart(w http.ResponseWriter, r *http.Request, rt route) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "use POST to start an upload")
		return
	}
	q := r.URL.Query()
	needs := []need{{rt.name, []string{auth.ActionPull, auth.ActionPush}}}
	from := q.Get("from")
	if mount := q.Get("mount"); mount != "" && from != "" && ValidateName(from) == nil && from != rt.name {
		needs = append(needs, need{from, []string{auth.ActionPull}})
	}
	if r.Header.Get("Authorization") == "" {
		// Anonymous callers can never push: challenge at once for every
		// scope involved, so a mount's token also carries pull on its source.
		var scopes []string
		for _, n := range needs {
			scopes = append(scopes, "repository:"+n.repo+":"+strings.Join(n.actions, ","))
		}
		s.challenge(w, r, scopes, "authentication required")
		return
	}
	p, ok := s.authorize(w, r, audit.ActionPush, needs[0])
	if !ok {
		return
	}
	repo, ok := s.ensureRepo(w, r, p, rt.name)
	if !ok {
		return
	}
	if mount := q.Get("mount"); mount != "" {
		if done := s.tryMount(w, r, p, rt.name, repo, mount, from, needs); done {
			return
		}
	}
	if dg := q.Get("digest"); dg != "" {
		s.monolithic(w, r, p, rt.name, repo, dg)
		return
	}
	id := newUploadID()
	if err := s.Store.CreateUpload(r.Context(), id, rt.name); err != nil {
		internalError(w, err)
		return
	}
	f, err := os.OpenFile(filepath.Join(s.UploadDir, id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		s.Store.DeleteUpload(r.Context(), id)
		internalError(w, err)
		return
	}
	f.Close()
	w.Header().Set("Location", s.uploadLocation(rt.name, id))
	w.Header().Set("Docker-Upload-UUID", id)
	setRange(w, 0)
	w.WriteHeader(http.StatusAccepted)
}

// ensureRepo returns the repository, creating it when its project exists
// (or, for the administrator, creating the project too).
func (s *Server) ensureRepo(w http.ResponseWriter, r *http.Request, p *auth.Principal, name string) (*store.Repo, bool) {
	proj := auth.ProjectOf(name)
	repo, err := s.Store.EnsureRepo(r.Context(), proj, name)
	var me *store.MissingError
	if errors.As(err, &me) && p.Admin {
		if _, err = s.Store.CreateProject(r.Context(), store.Project{Name: proj}); err != nil && !errors.Is(err, store.ErrConflict) {
			internalError(w, err)
			return nil, false
		}
		s.Auth.Invalidate()
		repo, err = s.Store.EnsureRepo(r.Context(), proj, name)
	}
	if errors.As(err, &me) {
		writeError(w, http.StatusNotFound, codeNameUnknown, me.Error())
		return nil, false
	}
	if err != nil {
		internalError(w, err)
		return nil, false
	}
	return repo, true
}

// tryMount links an existing blob from another repository the caller may
// pull; it reports whether it answered the request.
func (s *Server) tryMount(w http.ResponseWriter, r *http.Request, p *auth.Principal, name string, repo *store.Repo, dg, from string, needs []need) bool {
	if _, _, err := storage.ParseDigest(dg); err != nil {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error())
		return true
	}
	var size int64
	found := false
	if from != "" {
		if ValidateName(from) != nil {
			return false
		}
		can, err := s.Auth.Can(r.Context(), p, from, auth.ActionPull)
		if err != nil {
			internalError(w, err)
			return true
		}
		if !can {
			if p.Granted != nil {
				full := *p
				full.Granted = nil
				if ok, _ := s.Auth.Can(r.Context(), &full, from, auth.ActionPull); ok {
					var scopes []string
					for _, n := range needs {
						scopes = append(scopes, "repository:"+n.repo+":"+strings.Join(n.actions, ","))
					}
					s.challenge(w, r, scopes, "token does not grant pull on mount source "+from)
					return true
				}
			}
			s.deny(r, p, audit.ActionMount, []need{{from, []string{auth.ActionPull}}}, "mount source not pullable")
			return false // fall back to a normal upload
		}
		if src, err := s.Store.RepoByName(r.Context(), from); err == nil {
			if n, err := s.Store.BlobSize(r.Context(), src.ID, dg); err == nil {
				size, found = n, true
			}
		}
	} else {
		// Mount without a source: any repository holding the blob that the
		// caller may pull.
		names, err := s.Store.ReposWithBlob(r.Context(), dg)
		if err != nil {
			internalError(w, err)
			return true
		}
		acct := *p
		acct.Granted = nil
		for _, src := range names {
			if ok, _ := s.Auth.Can(r.Context(), &acct, src, auth.ActionPull); ok || src == name {
				if n, err := s.Store.GlobalBlobSize(r.Context(), dg); err == nil {
					size, found, from = n, true, src
				}
				break
			}
		}
	}
	if !found {
		return false
	}
	s.gcMu.RLock()
	err := s.Store.LinkBlob(r.Context(), repo.ID, dg, size)
	s.gcMu.RUnlock()
	if err != nil {
		internalError(w, err)
		return true
	}
	s.record(r, p, audit.ActionMount, name, dg, "", "from "+from)
	w.Header().Set("Location", "/v2/"+name+"/blobs/"+dg)
	w.Header().Set("Docker-Content-Digest", dg)
	w.WriteHeader(http.StatusCreated)
	return true
}

// monolithic stores a whole blob sent with POST ?digest=.
func (s *Server) monolithic(w http.ResponseWriter, r *http.Request, p *auth.Principal, name string, repo *store.Repo, dg string) {
	alg, _, err := storage.ParseDigest(dg)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error())
		return
	}
	if r.ContentLength > s.MaxBlobSize {
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("blob of %d bytes exceeds the limit of %d", r.ContentLength, s.MaxBlobSize))
		return
	}
	h, _ := storage.NewHash(alg)
	f, err := os.CreateTemp(s.UploadDir, "mono-*")
	if err != nil {
		internalError(w, err)
		return
	}
	defer os.Remove(f.Name())
	n, err := copyLimited(io.MultiWriter(f, h), r.Body, s.MaxBlobSize)
	f.Close()
	if errors.Is(err, errTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("blob exceeds the limit of %d bytes", s.MaxBlobSize))
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, codeBlobUploadInvalid, "reading body: "+err.Error())
		return
	}
	if r.ContentLength >= 0 && n != r.ContentLength {
		writeError(w, http.StatusBadRequest, codeSizeInvalid, fmt.Sprintf("received %d bytes, Content-Length said %d", n, r.ContentLength))
		return
	}
	if got := fmt.Sprintf("%s:%x", alg, h.Sum(nil)); got != dg {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("content digest is %s, not %s", got, dg))
		return
	}
	if !s.commit(w, r, p, name, repo, dg, f.Name(), n) {
		return
	}
	w.Header().Set("Location", "/v2/"+name+"/blobs/"+dg)
	w.Header().Set("Docker-Content-Digest", dg)
	w.WriteHeader(http.StatusCreated)
}

// commit moves a verified file into blob storage and links it into the
// repository, enforcing the project quota.
func (s *Server) commit(w http.ResponseWriter, r *http.Request, p *auth.Principal, name string, repo *store.Repo, dg, path string, size int64) bool {
	if !s.quotaOK(w, r, repo.ProjectID, name, size) {
		return false
	}
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if known, _ := s.Store.KnownBlob(r.Context(), dg); known {
		if _, err := s.Blobs.Stat(r.Context(), dg); err == nil {
			os.Remove(path)
		} else if err := s.Blobs.Commit(r.Context(), dg, path); err != nil {
			internalError(w, err)
			return false
		}
	} else if err := s.Blobs.Commit(r.Context(), dg, path); err != nil {
		internalError(w, err)
		return false
	}
	if err := s.Store.LinkBlob(r.Context(), repo.ID, dg, size); err != nil {
		internalError(w, err)
		return false
	}
	s.record(r, p, audit.ActionPush, name, dg, "", "blob")
	return true
}

func (s *Server) quotaOK(w http.ResponseWriter, r *http.Request, projectID int64, name string, add int64) bool {
	proj, err := s.Auth.Project(r.Context(), auth.ProjectOf(name))
	if err != nil || proj == nil || proj.QuotaBytes <= 0 {
		return true
	}
	used, err := s.Store.ProjectUsage(r.Context(), projectID)
	if err != nil {
		internalError(w, err)
		return false
	}
	if used+add > proj.QuotaBytes {
		writeError(w, http.StatusForbidden, codeDenied, fmt.Sprintf("project %s quota exceeded: %d of %d bytes used, this upload needs %d more", proj.Name, used, proj.QuotaBytes, add))
		return false
	}
	return true
}

var errTooLarge = errors.New("too large")

// copyLimited copies at most limit bytes, failing with errTooLarge if src
// has more.
func copyLimited(dst io.Writer, src io.Reader, limit int64) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	n, err := io.CopyBuffer(dst, io.LimitReader(src, limit+1), *bp)
	if err != nil {
		return n, err
	}
	if n > limit {
		return n, errTooLarge
	}
	return n, nil
}

// handleUpload serves GET/PATCH/PUT/DELETE on an upload session.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request, rt route) {
	p, ok := s.authorize(w, r, audit.ActionPush, need{rt.name, []string{auth.ActionPull, auth.ActionPush}})
	if !ok {
		return
	}
	ss, err := s.loadSession(r.Context(), rt.ref, rt.name)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeBlobUploadUnknown, "upload "+rt.ref+" is unknown to "+rt.name)
		return
	}
	if err != nil {
		internalError(w, err)
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.gone {
		writeError(w, http.StatusNotFound, codeBlobUploadUnknown, "upload "+rt.ref+" is finished or cancelled")
		return
	}
	loc := s.uploadLocation(rt.name, ss.id)
	switch r.Method {
	case http.MethodGet:
		w.Header().Set("Location", loc)
		w.Header().Set("Docker-Upload-UUID", ss.id)
		setRange(w, ss.offset)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		s.endSession(r.Context(), ss)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPatch:
		if !s.appendChunk(w, r, ss, true) {
			return
		}
		w.Header().Set("Location", loc)
		w.Header().Set("Docker-Upload-UUID", ss.id)
		setRange(w, ss.offset)
		w.WriteHeader(http.StatusAccepted)
	case http.MethodPut:
		dg := r.URL.Query().Get("digest")
		alg, _, err := storage.ParseDigest(dg)
		if err != nil {
			writeError(w, http.StatusBadRequest, codeDigestInvalid, "PUT needs ?digest=: "+err.Error())
			return
		}
		if r.ContentLength != 0 {
			if !s.appendChunk(w, r, ss, false) {
				return
			}
		}
		got, err := ss.digest(alg)
		if err != nil {
			internalError(w, err)
			return
		}
		if got != dg {
			s.endSession(r.Context(), ss)
			writeError(w, http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("uploaded content has digest %s, not %s", got, dg))
			return
		}
		repo, ok := s.ensureRepo(w, r, p, rt.name)
		if !ok {
			return
		}
		if !s.commit(w, r, p, rt.name, repo, dg, ss.path, ss.offset) {
			return
		}
		s.endSession(r.Context(), ss)
		w.Header().Set("Location", "/v2/"+rt.name+"/blobs/"+dg)
		w.Header().Set("Docker-Content-Digest", dg)
		w.WriteHeader(http.StatusCreated)
	default:
		w.Header().Set("Allow", "GET, PATCH, PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, r.Method+" is not supported on uploads")
	}
}

func (ss *session) digest(alg string) (string, error) {
	if alg == "sha256" {
		return fmt.Sprintf("sha256:%x", ss.h.Sum(nil)), nil
	}
	h, _ := storage.NewHash(alg)
	f, err := os.Open(ss.path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s:%x", alg, h.Sum(nil)), nil
}

func (s *Server) endSession(ctx context.Context, ss *session) {
	ss.gone = true
	s.sessions.Delete(ss.id)
	s.Store.DeleteUpload(context.WithoutCancel(ctx), ss.id)
	os.Remove(ss.path)
}

// appendChunk appends the request body at the session's offset. A
// Content-Range, when given, must start at the current offset. On any
// failure the session is rolled back to its previous offset.
func (s *Server) appendChunk(w http.ResponseWriter, r *http.Request, ss *session, isPatch bool) bool {
	if cr := r.Header.Get("Content-Range"); cr != "" {
		start, end, err := parseContentRange(cr)
		if err != nil {
			writeError(w, http.StatusBadRequest, codeRangeInvalid, err.Error())
			return false
		}
		if start != ss.offset {
			setRange(w, ss.offset)
			w.Header().Set("Location", s.uploadLocation(ss.repo, ss.id))
			writeError(w, http.StatusRequestedRangeNotSatisfiable, codeRangeInvalid, fmt.Sprintf("chunk starts at %d, the upload has %d bytes", start, ss.offset))
			return false
		}
		if r.ContentLength >= 0 && end-start+1 != r.ContentLength {
			writeError(w, http.StatusRequestedRangeNotSatisfiable, codeRangeInvalid, fmt.Sprintf("Content-Range %s does not match Content-Length %d", cr, r.ContentLength))
			return false
		}
	}
	if ss.offset+max(r.ContentLength, 0) > s.MaxBlobSize {
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("upload would exceed the blob size limit of %d bytes", s.MaxBlobSize))
		return false
	}
	state, _ := ss.h.(encoding.BinaryMarshaler).MarshalBinary()
	rollback := func() {
		os.Truncate(ss.path, ss.offset)
		ss.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state)
	}
	f, err := os.OpenFile(ss.path, os.O_WRONLY, 0)
	if err != nil {
		internalError(w, err)
		return false
	}
	if _, err := f.Seek(ss.offset, io.SeekStart); err != nil {
		f.Close()
		internalError(w, err)
		return false
	}
	// No fsync per chunk: a kill -9 keeps written bytes, and after a power
	// loss a file shorter than the recorded offset discards the session
	// (loadSession). The blob is fsynced once, when committed.
	n, err := copyLimited(io.MultiWriter(f, ss.h), r.Body, s.MaxBlobSize-ss.offset)
	f.Close()
	if err != nil {
		rollback()
		if errors.Is(err, errTooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("upload exceeds the blob size limit of %d bytes", s.MaxBlobSize))
		} else {
			writeError(w, http.StatusBadRequest, codeBlobUploadInvalid, "reading chunk: "+err.Error())
		}
		return false
	}
	if r.ContentLength >= 0 && n != r.ContentLength {
		rollback()
		writeError(w, http.StatusBadRequest, codeBlobUploadInvalid, fmt.Sprintf("received %d bytes, Content-Length said %d", n, r.ContentLength))
		return false
	}
	newState, _ := ss.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err := s.Store.UpdateUpload(context.WithoutCancel(r.Context()), ss.id, ss.offset+n, newState); err != nil {
		rollback()
		internalError(w, err)
		return false
	}
	ss.offset += n
	return true
}

func parseContentRange(v string) (int64, int64, error) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "bytes ")
	v = strings.TrimPrefix(v, "bytes=")
	if i := strings.Index(v, "/"); i >= 0 {
		v = v[:i]
	}
	a, b, ok := strings.Cut(v, "-")
	if !ok {
		return 0, 0, fmt.Errorf("Content-Range %q: want <start>-<end>", v)
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, fmt.Errorf("Content-Range %q: want <start>-<end> with start <= end", v)
	}
	return start, end, nil
}
