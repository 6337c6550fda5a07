package admission

import (
	"context"
	"time"

	"github.com/moat-dev/moat/internal/policy"
)

// WatchPolicy reloads the policy file into s when it changes or on SIGHUP
// (policy.Watch); a policy that does not load is reported through onError
// and the previous one stays in force.
func WatchPolicy(ctx context.Context, s *Server, path string, interval time.Duration, onLoad func(*policy.Policy), onError func(error)) {
	policy.Watch(ctx, path, interval, func(p *policy.Policy) {
		s.SetPolicy(p)
		if onLoad != nil {
			onLoad(p)
		}
	}, onError)
}
