#!/usr/bin/env bash
# Scan benchmark (issue 2, docs/BENCHMARKS.md): on the generated benchmark
# image (internal/benchimage; ~1 GB, 4 layers, ~60k files at scale 1) this
#   1. times `moat scan --format json` and `syft scan -o syft-json` on the same
#      docker-archive tarball, RUNS times each, interleaved, measuring wall
#      time and peak RSS with /usr/bin/time;
#   2. compares the package sets (name@version per ecosystem) and lists every
#      package syft finds that moat misses;
#   3. runs the Go benchmarks BenchmarkReadLayers (decompress + read every
#      layer once) and BenchmarkScan in one `go test` run and prints the
#      scan/read time ratio and the peak heap.
#
# Environment: MOAT_BENCH_SCALE (default 1), RUNS (default 3), BENCHTIME
# (go test -benchtime, default 3x), MOAT_BENCH_DIR (image cache, default
# ~/.cache/moat-bench), MOAT_TOOLS (peer tools, default ~/.cache/moat-tools),
# OUT (results directory, default a new temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE="${MOAT_BENCH_SCALE:-1}"
RUNS="${RUNS:-3}"
BENCHTIME="${BENCHTIME:-3x}"
OUT="${OUT:-$(mktemp -d /tmp/moat-bench-scan.XXXXXX)}"
mkdir -p "$OUT"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
log() { printf '== %s\n' "$*" >&2; }

if [ ! -x /usr/bin/time ]; then
  log "installing GNU time"
  apt-get install -y time >/dev/null || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
fi

log "benchmark image (scale $SCALE)"
go build -o "$OUT/benchcmd" ./internal/benchimage/benchcmd
IMAGE=$("$OUT/benchcmd" generate -scale "$SCALE")
EXPECTED="$(dirname "$IMAGE")/expected.json"

# cmd/moat may not compile while others work on it: retry for a while.
log "building moat"
for i in $(seq 1 "${MOAT_BUILD_TRIES:-10}"); do
  if go build -o "$OUT/moat" ./cmd/moat 2>"$OUT/moat-build.log"; then break; fi
  log "cmd/moat does not build (try $i): $(head -3 "$OUT/moat-build.log" | tr '\n' ' ')"
  [ "$i" = "${MOAT_BUILD_TRIES:-10}" ] && exit 1
  sleep 60
done

log "building syft"
scripts/peers/syft.sh >&2
SYFT="${MOAT_TOOLS:-$HOME/.cache/moat-tools}/bin/syft"
export SYFT_CHECK_FOR_APP_UPDATE=false

cat "$IMAGE" >/dev/null # both tools read the archive from the page cache

# run NAME I CMD...: wall seconds, peak RSS (KB), user and system CPU seconds
run() {
  local name=$1 i=$2; shift 2
  /usr/bin/time -f '%e %M %U %S' -o "$OUT/$name-time-$i" "$@" >"$OUT/$name-stdout-$i" 2>"$OUT/$name-stderr-$i" || {
    echo "$name run $i failed:" >&2; tail -20 "$OUT/$name-stderr-$i" >&2; exit 1; }
}
for i in $(seq 1 "$RUNS"); do
  log "run $i/$RUNS: moat"
  run moat "$i" "$OUT/moat" scan --format json --output "$OUT/moat.json" "docker-archive:$IMAGE"
  log "run $i/$RUNS: syft"
  run syft "$i" "$SYFT" scan "docker-archive:$IMAGE" -o "syft-json=$OUT/syft.json" -q
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cpu() { # tool: median user+system CPU seconds
  for i in $(seq 1 "$RUNS"); do awk '{print $3+$4}' "$OUT/$1-time-$i"; done | median
}
stat() { # tool field
  for i in $(seq 1 "$RUNS"); do awk -v f="$2" '{print $f}' "$OUT/$1-time-$i"; done | median
}
echo
echo "image: $IMAGE ($(du -m "$IMAGE" | cut -f1) MB compressed); scale $SCALE; $(nproc) cores"
printf '%-5s %-24s %9s %12s %9s\n' tool "wall s (runs)" "median s" "peak RSS MB" "CPU s"
for t in moat syft; do
  runs=$(for i in $(seq 1 "$RUNS"); do awk '{printf "%s ", $1}' "$OUT/$t-time-$i"; done)
  rss=$(for i in $(seq 1 "$RUNS"); do awk '{print $2}' "$OUT/$t-time-$i"; done | sort -n | tail -1)
  printf '%-5s %-24s %9s %12d %9s\n' "$t" "$runs" "$(stat "$t" 1)" "$((rss / 1024))" "$(cpu "$t")"
done
awk -v m="$(stat moat 1)" -v s="$(stat syft 1)" 'BEGIN {printf "syft/moat wall time: %.2fx (target: >= 3x)\n", s/m}'
awk -v m="$(cpu moat)" -v s="$(cpu syft)" 'BEGIN {printf "syft/moat CPU time:  %.2fx\n", s/m}'

echo
echo "package sets (name@version per ecosystem):"
"$OUT/benchcmd" compare -moat "$OUT/moat.json" -syft "$OUT/syft.json" -expected "$EXPECTED" | tee "$OUT/compare.txt" || true

echo
log "Go benchmarks (scale $SCALE, -benchtime $BENCHTIME)"
MOAT_BENCH_SCALE="$SCALE" go test ./internal/scan/ -run '^$' -bench '^(BenchmarkReadLayers|BenchmarkScan|BenchmarkScanOverRead)$' \
  -benchtime "$BENCHTIME" -count 1 -timeout 60m | tee "$OUT/gobench.txt"
awk '
  function grab(arr,   i) { for (i = 2; i < NF; i++) arr[$(i+1)] = $i }
  /^BenchmarkReadLayers-/   { grab(r) }
  /^BenchmarkScan-/         { grab(s) }
  /^BenchmarkScanOverRead-/ { grab(a) }
  END {
    if (!r["ns/op"] || !s["ns/op"]) exit
    printf "separate benchmarks:   scan/read wall %.2f (read %.2f s, scan %.2f s), CPU %.2f (read %.2f s, scan %.2f s)\n", s["ns/op"]/r["ns/op"], r["ns/op"]/1e9, s["ns/op"]/1e9, s["cpu-s/op"]/r["cpu-s/op"], r["cpu-s/op"], s["cpu-s/op"]
    if (a["scan/read-wall"]) printf "alternating read/scan: scan/read wall %.2f (read %.2f s, scan %.2f s), CPU %.2f (target: <= 1.25)\n", a["scan/read-wall"], a["read-s/op"], a["scan-s/op"], a["scan/read-cpu"]
    printf "scan peak heap %s MB, Go memory %s MB (target: < 250 MB)\n", s["peak-heap-MB"], s["peak-go-mem-MB"]
  }
' "$OUT/gobench.txt"
echo "load average: $(cut -d" " -f1-3 /proc/loadavg) (other work on the machine inflates wall times; CPU times are steadier)"
echo "results in $OUT"
