// Package audit defines the audit event model and records events
// asynchronously in batches to a Sink (the metadata store). A later issue
// chains events into a tamper-evident log; the model carries everything
// needed for that: who, what, on which repository and digest, when, from
// where, and whether it was allowed.
package audit

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Actions recorded by the registry.
const (
	ActionLogin          = "login"
	ActionPull           = "pull"           // manifest or blob content read
	ActionPush           = "push"           // manifest or blob written
	ActionDelete         = "delete"         // manifest, tag or blob deleted
	ActionMount          = "mount"          // cross-repository blob mount
	ActionUserCreate     = "user.create"    //
	ActionUserDisable    = "user.disable"   //
	ActionUserEnable     = "user.enable"    //
	ActionProjectCreate  = "project.create" //
	ActionProjectUpdate  = "project.update" //
	ActionMemberAdd      = "member.add"     //
	ActionMemberRemove   = "member.remove"  //
	ActionRobotCreate    = "robot.create"   //
	ActionRobotRevoke    = "robot.revoke"   //
	ActionGarbageCollect = "gc"             //
	ActionTrustAdd       = "trust.add"      // a trusted public key added to a project
	ActionTrustRemove    = "trust.remove"   //
	ActionKeyCreate      = "key.create"     // a server-held key created (e.g. the registry key)
	ActionKeySign        = "key.sign"       // a server-held key signed something
	ActionKeyReseal      = "key.reseal"     // the server-held keys re-sealed under a new master key
)

// ActorKindSystem marks events done by the server itself (e.g. the
// registry key signing a scan-on-push attestation).
const ActorKindSystem = "system"

// Event is one audited action.
type Event struct {
	ID         int64     `json:"id,omitempty"`
	Time       time.Time `json:"time"`
	Actor      string    `json:"actor"`      // user or robot name; "" for anonymous
	ActorKind  string    `json:"actor_kind"` // "user", "robot", "anonymous"
	Action     string    `json:"action"`
	Repository string    `json:"repository,omitempty"`
	Digest     string    `json:"digest,omitempty"`
	Tag        string    `json:"tag,omitempty"`
	RemoteAddr string    `json:"remote_addr,omitempty"`
	Allowed    bool      `json:"allowed"`
	Detail     string    `json:"detail,omitempty"`
}

// Sink persists batches of events.
type Sink interface {
	InsertEvents(ctx context.Context, events []Event) error
}

// Recorder buffers events and writes them to a Sink in the background so
// that recording never adds a database write to the request path. Close
// flushes everything buffered.
type Recorder struct {
	sink Sink
	log  *slog.Logger
	ch   chan item
	wg   sync.WaitGroup
	once sync.Once
}

// NewRecorder starts a recorder writing to sink.
func NewRecorder(sink Sink, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.Default()
	}
	r := &Recorder{sink: sink, log: log, ch: make(chan item, 4096)}
	r.wg.Add(1)
	go r.run()
	return r
}

// Record queues an event; it blocks only when the buffer is full, so events
// are never dropped.
func (r *Recorder) Record(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.ActorKind == "" {
		if e.Actor == "" {
			e.ActorKind = "anonymous"
		} else {
			e.ActorKind = "user"
		}
	}
	r.ch <- item{e: e}
}

type item struct {
	e    Event
	done chan struct{}
}

func (r *Recorder) run() {
	defer r.wg.Done()
	batch := make([]Event, 0, 256)
	var waiters []chan struct{}
	flush := func() {
		if len(batch) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := r.sink.InsertEvents(ctx, batch); err != nil {
				r.log.Error("audit: writing events failed", "count", len(batch), "err", err)
			}
			cancel()
			batch = batch[:0]
		}
		for _, w := range waiters {
			close(w)
		}
		waiters = waiters[:0]
	}
	add := func(it item) {
		if it.done != nil {
			waiters = append(waiters, it.done)
			return
		}
		batch = append(batch, it.e)
	}
	// Group commit: after the first event, gather what arrives within
	// lingerFor (or until the batch is full, or someone waits in Flush)
	// into one transaction; a busy registry then writes a few hundred
	// events per transaction instead of one.
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for it := range r.ch {
		add(it)
		linger.Reset(lingerFor)
	gather:
		for len(batch) < cap(batch) && len(waiters) == 0 {
			select {
			case it, ok := <-r.ch:
				if !ok {
					break gather
				}
				add(it)
			case <-linger.C:
				break gather
			}
		}
		linger.Stop()
		flush()
	}
	flush()
}

// lingerFor is how long the recorder waits for more events before
// writing a batch.
const lingerFor = 20 * time.Millisecond

// Flush waits until every event recorded before the call is written.
func (r *Recorder) Flush() {
	done := make(chan struct{})
	r.ch <- item{done: done}
	<-done
}

// Close flushes buffered events and stops the recorder.
func (r *Recorder) Close() {
	r.once.Do(func() { close(r.ch) })
	r.wg.Wait()
}
