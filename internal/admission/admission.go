// Package admission is moat's Kubernetes admission webhook: a validating
// endpoint (AdmissionReview admission.k8s.io/v1) that evaluates Pods and
// workload controllers against the policy, and an optional mutating
// endpoint that pins image tags to digests with a JSONPatch.
//
// Failure behaviour: each rule's onError (deny = fail closed, allow = fail
// open) decides what happens when image facts cannot be read within
// FactsTimeout, which is kept well inside the API server's webhook timeout
// so that moat always answers; the ValidatingWebhookConfiguration's
// failurePolicy covers moat being unreachable.
package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/workload"
)

// MaxReviewBytes bounds an AdmissionReview body (the API server's own
// request limit is 3 MiB for objects).
const MaxReviewBytes = 8 << 20

// Server answers AdmissionReviews.
type Server struct {
	Facts    policy.FactsProvider
	Resolver policy.DigestResolver
	// ExcludeNamespaces are never checked (globs: "kube-*").
	ExcludeNamespaces []string
	// FactsTimeout bounds the image lookups of one review (default 3s; the
	// API server's webhook timeout is at most 30s, 10s by default).
	FactsTimeout time.Duration
	Log          *slog.Logger

	policy atomic.Pointer[policy.Policy]
}

// SetPolicy installs a policy (used by reloads).
func (s *Server) SetPolicy(p *policy.Policy) { s.policy.Store(p) }

// Policy returns the policy in force.
func (s *Server) Policy() *policy.Policy { return s.policy.Load() }

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) timeout() time.Duration {
	if s.FactsTimeout > 0 {
		return s.FactsTimeout
	}
	return 3 * time.Second
}

// Handler serves /validate, /mutate and /healthz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/validate", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, s.Validate) })
	mux.HandleFunc("/mutate", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, s.Mutate) })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if s.Policy() == nil {
			http.Error(w, "no policy loaded", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}

// DecodeReview reads an AdmissionReview v1 request; errors say what is wrong.
func DecodeReview(body []byte) (*admissionv1.AdmissionReview, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errors.New("empty body: expected an AdmissionReview (admission.k8s.io/v1) JSON document")
	}
	var rev admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &rev); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) && strings.HasSuffix(se.Error(), "after top-level value") {
			return nil, errors.New("trailing data after the AdmissionReview document")
		}
		return nil, fmt.Errorf("not an AdmissionReview JSON document: %v", err)
	}
	if rev.APIVersion != "admission.k8s.io/v1" || rev.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("expected apiVersion admission.k8s.io/v1, kind AdmissionReview; got apiVersion %q, kind %q", rev.APIVersion, rev.Kind)
	}
	if rev.Request == nil {
		return nil, errors.New("AdmissionReview has no request")
	}
	if rev.Request.UID == "" {
		return nil, errors.New("AdmissionReview request has no uid")
	}
	return &rev, nil
}

// bodyBuffers holds request-body buffers between reviews; buffers grown
// past 1 MiB by a large review are not kept.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, review func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	// the body is read into a pooled buffer: the decoded review copies
	// what it keeps (strings, RawExtension bytes), so the buffer is free
	// again once the review is decoded
	buf := bodyBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 1<<20 {
			bodyBuffers.Put(buf)
		}
	}()
	if r.ContentLength > 0 {
		// sized from the header, but only up to 64 KiB ahead of the bytes
		// actually sent, so a header cannot make the server allocate
		buf.Grow(int(min(r.ContentLength, 64<<10)) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, MaxReviewBytes+1)); err != nil {
		http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	body := buf.Bytes()
	if len(body) > MaxReviewBytes {
		http.Error(w, fmt.Sprintf("malformed AdmissionReview: larger than %d bytes", MaxReviewBytes), http.StatusRequestEntityTooLarge)
		return
	}
	rev, err := DecodeReview(body)
	if err != nil {
		http.Error(w, "malformed AdmissionReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	resp := review(r.Context(), rev.Request)
	resp.UID = rev.Request.UID
	out := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Response: resp}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(&out)
}

func (s *Server) excluded(ns string) bool {
	for _, p := range s.ExcludeNamespaces {
		if ok, _ := globMatch(p, ns); ok {
			return true
		}
	}
	return false
}

func globMatch(p, s string) (bool, error) {
	if !strings.Contains(p, "*") {
		return p == s, nil
	}
	parts := strings.Split(p, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false, nil
	}
	s = s[len(parts[0]):]
	for i, part := range parts[1:] {
		if i == len(parts)-2 {
			return strings.HasSuffix(s, part), nil
		}
		j := strings.Index(s, part)
		if j < 0 {
			return false, nil
		}
		s = s[j+len(part):]
	}
	return true, nil
}

func allow(warnings ...string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}
}

// workloadOf decodes the request's object, or says why it is allowed
// without a check (nil workload).
func (s *Server) workloadOf(req *admissionv1.AdmissionRequest) (*workload.Workload, *admissionv1.AdmissionResponse) {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return nil, allow()
	}
	if s.excluded(req.Namespace) {
		return nil, allow()
	}
	if len(req.Object.Raw) == 0 {
		return nil, allow("moat: the request carries no object; not checked")
	}
	var w *workload.Workload
	var err error
	if req.Kind.Kind != "" && req.Kind.Version != "" {
		av := req.Kind.Version
		if req.Kind.Group != "" {
			av = req.Kind.Group + "/" + av
		}
		w, err = workload.FromKubernetes(av, req.Kind.Kind, req.Object.Raw)
	} else {
		w, err = workload.FromKubernetesJSON(req.Object.Raw)
	}
	var uk *workload.UnsupportedKindError
	if errors.As(err, &uk) {
		return nil, allow(fmt.Sprintf("moat: %s is not a workload moat checks; allowed without a policy check", uk.Kind))
	}
	if err != nil {
		return nil, &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest, Message: "moat: cannot read the object: " + err.Error()}}
	}
	if w.Namespace == "" {
		w.Namespace = req.Namespace
	}
	if w.Name == "" {
		w.Name = req.Name
	}
	return w, nil
}

// Validate evaluates one admission request.
func (s *Server) Validate(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	p := s.Policy()
	if p == nil {
		return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Code: http.StatusServiceUnavailable, Message: "moat: no policy loaded"}}
	}
	w, resp := s.workloadOf(req)
	if resp != nil {
		return resp
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	res := p.Evaluate(ctx, w, policy.Options{Facts: s.Facts})
	var warnings []string
	for _, v := range res.With(policy.Warn) {
		warnings = append(warnings, clip("moat: "+v.Rule+": "+where(v)+v.Message, 240))
	}
	for _, n := range res.Notes {
		warnings = append(warnings, clip("moat: "+n, 240))
	}
	out := &admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}
	if audits := res.With(policy.Audit); len(audits) > 0 {
		var lines []string
		for _, v := range audits {
			lines = append(lines, v.Rule+": "+where(v)+v.Message)
		}
		out.AuditAnnotations = map[string]string{"moat.dev/audit": clip(strings.Join(lines, "; "), 4000)}
		s.log().Info("audit", "object", w.ObjectName(), "violations", lines)
	}
	if res.Denied() {
		var lines []string
		for _, v := range res.With(policy.Enforce) {
			l := v.Rule + ": " + where(v) + v.Message
			if v.Fix != "" {
				l += " (fix: " + v.Fix + ")"
			}
			lines = append(lines, l)
		}
		name := p.Name
		if name == "" {
			name = p.File
		}
		out.Allowed = false
		out.Result = &metav1.Status{Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden,
			Message: clip(fmt.Sprintf("moat policy %s denies %s: %s", name, w.ObjectName(), strings.Join(lines, "; ")), 8000)}
		s.log().Info("denied", "object", w.ObjectName(), "violations", lines)
	}
	return out
}

func where(v policy.Violation) string {
	if v.Container != "" {
		return "container " + v.Container + ": "
	}
	if v.Field != "" {
		return v.Field + ": "
	}
	return ""
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// Mutate pins each container image given by tag to its digest.
func (s *Server) Mutate(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	w, resp := s.workloadOf(req)
	if resp != nil {
		return resp
	}
	if s.Resolver == nil {
		return allow()
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value string `json:"value"`
	}
	var ops []op
	var warnings []string
	for _, c := range w.Containers {
		if c.Image == "" || strings.Contains(c.Image, "@") || c.Pointer == "" {
			continue
		}
		d, err := s.Resolver.ResolveDigest(ctx, c.Image)
		if err != nil {
			warnings = append(warnings, clip(fmt.Sprintf("moat: could not pin %s to a digest: %v", c.Image, err), 240))
			continue
		}
		ops = append(ops, op{Op: "replace", Path: c.Pointer + "/image", Value: c.Image + "@" + d})
	}
	out := allow(warnings...)
	if len(ops) > 0 {
		b, _ := json.Marshal(ops)
		pt := admissionv1.PatchTypeJSONPatch
		out.Patch, out.PatchType = b, &pt
	}
	return out
}
