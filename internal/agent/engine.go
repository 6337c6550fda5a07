package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/moat-dev/moat/internal/fleet"
)

// watchedActions are the container events that change the inventory.
var watchedActions = []string{"create", "start", "restart", "die", "destroy", "pause", "unpause", "rename", "update"}

// watch keeps the inventory in step with the engine, reconnecting with
// backoff and re-synchronising fully after every reconnect.
func (a *Agent) watch(ctx context.Context) {
	bo := backoff{max: a.cfg.MaxBackoff}
	for {
		err := a.watchOnce(ctx, &bo)
		if ctx.Err() != nil {
			return
		}
		d := bo.next()
		a.log.Error(a.describeEngineError(err), "retry_in", d.Round(time.Millisecond).String())
		if !sleep(ctx, d) {
			return
		}
	}
}

// describeEngineError turns an engine connection failure into a message
// saying what to do.
func (a *Agent) describeEngineError(err error) string {
	host := a.cfg.DockerHost
	if p, ok := strings.CutPrefix(host, "unix://"); ok {
		if _, serr := os.Stat(p); errors.Is(serr, fs.ErrNotExist) {
			return fmt.Sprintf("the Docker engine socket %s does not exist: is dockerd running? (set --docker-host for another socket)", p)
		}
		if c, derr := net.Dial("unix", p); derr != nil {
			if errors.Is(derr, fs.ErrPermission) || strings.Contains(derr.Error(), "permission denied") {
				return fmt.Sprintf("permission denied on the Docker engine socket %s: run the agent as root or as a member of the socket's group (docker)", p)
			}
			return fmt.Sprintf("cannot connect to the Docker engine socket %s: %v", p, derr)
		} else {
			c.Close()
		}
	}
	if client.IsErrConnectionFailed(err) {
		return fmt.Sprintf("cannot connect to the Docker engine at %s: %v", host, err)
	}
	return fmt.Sprintf("Docker engine at %s: %v", host, err)
}

// watchOnce subscribes to events, lists and inspects every container (a
// full re-sync), then applies events until the stream fails.
func (a *Agent) watchOnce(ctx context.Context, bo *backoff) error {
	info, err := a.cli.Info(ctx)
	if err != nil {
		return err
	}
	h := fleet.Host{
		Name: a.cfg.HostName, EngineID: info.ID, EngineVersion: info.ServerVersion, OS: info.OperatingSystem,
		Arch: info.Architecture, CPUs: info.NCPU, MemoryBytes: info.MemTotal, AgentVersion: a.cfg.Version,
	}
	if h.Name == "" {
		h.Name = info.Name
	}
	if h.Arch == "" {
		h.Arch = runtime.GOARCH
	}
	a.mu.Lock()
	clear(a.images) // digests may have changed (pushed, pulled) meanwhile
	a.mu.Unlock()
	evCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)))
	for _, act := range watchedActions {
		f.Add("event", act)
	}
	lf := filters.NewArgs()
	for _, l := range a.cfg.Labels {
		f.Add("label", l)
		lf.Add("label", l)
	}
	msgs, errs := a.cli.Events(evCtx, events.ListOptions{Filters: f})

	list, err := a.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: lf})
	if err != nil {
		return err
	}
	snap := make(map[string]fleet.Container, len(list))
	for _, s := range list {
		c, ok, err := a.inspect(ctx, s.ID)
		if err != nil {
			return err
		}
		if ok {
			snap[c.ID] = c
		}
	}
	a.mu.Lock()
	a.host, a.hostKnown = h, true
	a.containers = snap
	a.full = true
	clear(a.dirty)
	a.mu.Unlock()
	poke(a.wake)
	a.log.Info("synchronised with the Docker engine", "host", h.Name, "engine", h.EngineVersion, "containers", len(snap))
	bo.reset()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			if err == nil {
				err = errors.New("event stream ended")
			}
			return fmt.Errorf("event stream: %w", err)
		case m := <-msgs:
			if err := a.onEvent(ctx, m); err != nil {
				return err
			}
		}
	}
}

// onEvent refreshes the container an event is about.
func (a *Agent) onEvent(ctx context.Context, m events.Message) error {
	id := m.Actor.ID
	if id == "" {
		return nil
	}
	var c fleet.Container
	ok := false
	if m.Action != events.ActionDestroy {
		var err error
		c, ok, err = a.inspect(ctx, id)
		if err != nil {
			return err
		}
	}
	a.mu.Lock()
	if ok {
		a.containers[id] = c
	} else {
		delete(a.containers, id)
	}
	a.markDirty(id)
	a.mu.Unlock()
	poke(a.wake)
	return nil
}

// inspect describes one container; ok is false when it no longer exists
// (removed between the list or event and the inspection).
func (a *Agent) inspect(ctx context.Context, id string) (fleet.Container, bool, error) {
	insp, err := a.cli.ContainerInspect(ctx, id)
	if err != nil {
		if client.IsErrNotFound(err) {
			return fleet.Container{}, false, nil
		}
		return fleet.Container{}, false, fmt.Errorf("inspecting container %.12s: %w", id, err)
	}
	c := fleet.Container{ID: insp.ID, Name: strings.TrimPrefix(insp.Name, "/"), ImageID: insp.Image}
	if insp.Config != nil {
		c.Image = insp.Config.Image
		c.Labels = insp.Config.Labels
		c.Runtime.User = insp.Config.User
	}
	c.Created = parseTime(insp.Created)
	if insp.State != nil {
		c.State = string(insp.State.Status)
		if insp.State.Running || insp.State.Paused || insp.State.Restarting {
			c.StartedAt = parseTime(insp.State.StartedAt)
		}
	}
	c.Runtime.AppArmor = insp.AppArmorProfile
	if hc := insp.HostConfig; hc != nil {
		r := &c.Runtime
		r.Privileged = hc.Privileged
		r.CapAdd, r.CapDrop = []string(hc.CapAdd), []string(hc.CapDrop)
		r.ReadOnlyRootFS = hc.ReadonlyRootfs
		r.HostPID, r.HostIPC, r.HostNetwork = hc.PidMode.IsHost(), hc.IpcMode.IsHost(), hc.NetworkMode.IsHost()
		r.SecurityOpt = hc.SecurityOpt
		for _, o := range hc.SecurityOpt {
			k, v, found := strings.Cut(o, "=")
			if !found {
				k, v, _ = strings.Cut(o, ":")
			}
			switch k {
			case "seccomp":
				r.Seccomp = v
			case "no-new-privileges":
				r.NoNewPrivileges = v == "" || v == "true"
			case "apparmor":
				if r.AppArmor == "" {
					r.AppArmor = v
				}
			}
		}
		r.MemoryLimit, r.NanoCPUs, r.CPUQuota, r.CPUPeriod = hc.Memory, hc.NanoCPUs, hc.CPUQuota, hc.CPUPeriod
		if hc.PidsLimit != nil && *hc.PidsLimit > 0 {
			r.PIDsLimit = *hc.PidsLimit
		}
	}
	for _, m := range insp.Mounts {
		fm := fleet.Mount{Type: string(m.Type), Source: m.Source, Destination: m.Destination, RW: m.RW}
		c.Runtime.Mounts = append(c.Runtime.Mounts, fm)
		if fm.Type == "bind" && fleet.IsDockerSocket(fm.Source) {
			c.Runtime.DockerSocket = true
		}
	}
	facts, err := a.imageFacts(ctx, c.ImageID)
	if err != nil {
		return fleet.Container{}, false, err
	}
	c.Digest, c.Runtime.ImageUser = facts.digest, facts.user
	return c, true, nil
}

// imageFacts returns (and caches) an image's manifest digest and USER.
func (a *Agent) imageFacts(ctx context.Context, id string) (imageFacts, error) {
	a.mu.Lock()
	f, ok := a.images[id]
	a.mu.Unlock()
	if ok || id == "" {
		return f, nil
	}
	insp, err := a.cli.ImageInspect(ctx, id)
	if err != nil {
		if client.IsErrNotFound(err) {
			return imageFacts{}, nil // removed with -f while in use: ID only
		}
		return imageFacts{}, fmt.Errorf("inspecting image %s: %w", id, err)
	}
	for _, rd := range insp.RepoDigests {
		if _, d, ok := strings.Cut(rd, "@"); ok {
			f.digest = d
			break
		}
	}
	if insp.Config != nil {
		f.user = insp.Config.User
	}
	a.mu.Lock()
	if len(a.images) > 10000 {
		clear(a.images)
	}
	a.images[id] = f
	a.mu.Unlock()
	return f, nil
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 1971 {
		return time.Time{}
	}
	return t.UTC()
}
