package python

import (
	"testing"

	"github.com/moat-dev/moat/internal/catalog/catalogtest"
)

// BenchmarkWants measures the per-file cost of Wants on typical image paths
// (it runs for every file of every layer).
func BenchmarkWants(b *testing.B) {
	catalogtest.BenchmarkWants(b, New(), catalogtest.WantsBenchPaths)
}
