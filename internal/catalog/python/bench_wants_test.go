package python

import "testing"

// BenchmarkWants measures the per-file cost of Wants on typical image paths
// (it runs for every file of every layer).
func BenchmarkWants(b *testing.B) {
	paths := []string{
		"/usr/share/doc/libc6/copyright",
		"/usr/lib/x86_64-linux-gnu/libssl.so.3",
		"/app/node_modules/express/lib/router/index.js",
		"/app/node_modules/express/package.json",
		"/usr/local/lib/python3.12/site-packages/requests-2.31.0.dist-info/METADATA",
		"/usr/local/bundle/specifications/rack-2.2.8.gemspec",
		"/var/www/html/vendor/composer/installed.json",
		"/app/WebApi.deps.json",
	}
	c := New()
	n := 0
	for b.Loop() {
		for _, p := range paths {
			if c.Wants(p, 0o644, 1000) {
				n++
			}
		}
	}
	if n == 0 {
		b.Fatal("no path wanted")
	}
}
