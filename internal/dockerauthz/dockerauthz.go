// Package dockerauthz is moat's Docker Engine authorization plugin: dockerd
// (started with --authorization-plugin=NAME) asks it about every API
// request over the plugin protocol (/Plugin.Activate,
// /AuthZPlugin.AuthZReq, /AuthZPlugin.AuthZRes on a unix socket under
// /run/docker/plugins/). Container creation requests that break the policy
// are denied, and privileged exec sessions when the policy forbids
// privileged mode; the reason is shown to the docker CLI user as
// "Error response from daemon: authorization denied by plugin NAME: ...".
// Everything else is allowed.
package dockerauthz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-dev/moat/internal/policy"
	"github.com/moat-dev/moat/internal/workload"
)

// PluginDir is where dockerd discovers plugin sockets.
const PluginDir = "/run/docker/plugins"

const contentType = "application/vnd.docker.plugins.v1.2+json"

// Request is an AuthZPlugin.AuthZReq / AuthZRes body (the fields moat uses).
type Request struct {
	User            string            `json:"User,omitempty"`
	UserAuthNMethod string            `json:"UserAuthNMethod,omitempty"`
	RequestMethod   string            `json:"RequestMethod,omitempty"`
	RequestURI      string            `json:"RequestUri,omitempty"`
	RequestBody     []byte            `json:"RequestBody,omitempty"`
	RequestHeaders  map[string]string `json:"RequestHeaders,omitempty"`
}

// Response answers an authorization request.
type Response struct {
	Allow bool   `json:"Allow"`
	Msg   string `json:"Msg,omitempty"`
	Err   string `json:"Err,omitempty"`
}

// Plugin is the authorization plugin.
type Plugin struct {
	Facts policy.FactsProvider
	// FactsTimeout bounds image lookups per request (default 5s; dockerd
	// waits for the plugin).
	FactsTimeout time.Duration
	Log          *slog.Logger

	policy atomic.Pointer[policy.Policy]
}

// SetPolicy installs a policy; Policy returns the one in force.
func (p *Plugin) SetPolicy(pol *policy.Policy) { p.policy.Store(pol) }
func (p *Plugin) Policy() *policy.Policy       { return p.policy.Load() }

func (p *Plugin) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.New(slog.DiscardHandler)
}

// MaxRequestBytes bounds a plugin request (dockerd forwards bodies up to 1 MiB).
const MaxRequestBytes = 4 << 20

// Handler serves the plugin protocol.
func (p *Plugin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string][]string{"Implements": {"authz"}})
	})
	mux.HandleFunc("/AuthZPlugin.AuthZReq", func(w http.ResponseWriter, r *http.Request) {
		req, err := decode(r)
		if err != nil {
			reply(w, Response{Err: err.Error()})
			return
		}
		reply(w, p.Authorize(r.Context(), req))
	})
	mux.HandleFunc("/AuthZPlugin.AuthZRes", func(w http.ResponseWriter, r *http.Request) {
		reply(w, Response{Allow: true})
	})
	return mux
}

func decode(r *http.Request) (*Request, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("moat: reading the authorization request: %v", err)
	}
	if len(b) > MaxRequestBytes {
		return nil, fmt.Errorf("moat: authorization request larger than %d bytes", MaxRequestBytes)
	}
	var req Request
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, fmt.Errorf("moat: malformed authorization request: %v", err)
	}
	return &req, nil
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", contentType)
	json.NewEncoder(w).Encode(v)
}

// The path patterns are compiled on first use, not at process start.
var (
	createPath = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(/v[0-9.]+)?/containers/create$`) })
	execPath   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(/v[0-9.]+)?/containers/[^/]+/exec$`) })
)

// Authorize decides one request.
func (p *Plugin) Authorize(ctx context.Context, req *Request) Response {
	if req.RequestMethod != http.MethodPost {
		return Response{Allow: true}
	}
	u, err := url.ParseRequestURI(req.RequestURI)
	if err != nil {
		return Response{Allow: true}
	}
	pol := p.Policy()
	switch {
	case createPath().MatchString(u.Path):
		if pol == nil {
			return Response{Msg: "moat: no policy loaded"}
		}
		w, err := workload.FromDockerCreate(u.Query().Get("name"), req.RequestBody)
		if err != nil {
			return Response{Msg: "moat: " + err.Error()}
		}
		return p.evaluate(ctx, pol, w, req.User)
	case execPath().MatchString(u.Path):
		var body struct{ Privileged bool }
		if json.Unmarshal(req.RequestBody, &body) == nil && body.Privileged && pol != nil && forbidsPrivileged(pol) {
			return Response{Msg: "moat: privileged exec sessions are not allowed by the policy"}
		}
	}
	return Response{Allow: true}
}

func forbidsPrivileged(pol *policy.Policy) bool {
	w := &workload.Workload{Kind: "DockerContainer", Runtime: true, Containers: []workload.Container{{Privileged: ptr(true), Image: "moat.invalid/x@sha256:" + strings.Repeat("0", 64)}}}
	for _, v := range pol.Evaluate(context.Background(), w, policy.Options{}).Violations {
		if v.Check == "runtime.privileged" && v.Action == policy.Enforce {
			return true
		}
	}
	return false
}

func ptr[T any](v T) *T { return &v }

func (p *Plugin) evaluate(ctx context.Context, pol *policy.Policy, w *workload.Workload, user string) Response {
	t := p.FactsTimeout
	if t <= 0 {
		t = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	res := pol.Evaluate(ctx, w, policy.Options{Facts: p.Facts})
	for _, v := range res.With(policy.Warn) {
		p.log().Warn("policy warning", "container", w.Name, "image", v.Image, "rule", v.Rule, "message", v.Message)
	}
	for _, v := range res.With(policy.Audit) {
		p.log().Info("policy audit", "container", w.Name, "image", v.Image, "rule", v.Rule, "message", v.Message)
	}
	if !res.Denied() {
		return Response{Allow: true}
	}
	var lines []string
	for _, v := range res.With(policy.Enforce) {
		l := v.Rule + ": " + v.Message
		if v.Fix != "" {
			l += " (fix: " + v.Fix + ")"
		}
		lines = append(lines, l)
	}
	name := pol.Name
	if name == "" {
		name = pol.File
	}
	img := ""
	if len(w.Containers) > 0 {
		img = w.Containers[0].Image
	}
	p.log().Info("denied", "user", user, "image", img, "violations", lines)
	return Response{Msg: fmt.Sprintf("moat policy %s denies container from image %s: %s", name, img, strings.Join(lines, "; "))}
}

// Listen creates the plugin socket dir/NAME.sock (removing a stale one).
func Listen(dir, name string) (net.Listener, string, error) {
	if name == "" || strings.ContainsAny(name, "/\\") {
		return nil, "", errors.New("plugin name must be a plain name")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	path := filepath.Join(dir, name+".sock")
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, "", fmt.Errorf("%s is in use by another plugin", path)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, "", err
	}
	os.Chmod(path, 0o600)
	return l, path, nil
}
