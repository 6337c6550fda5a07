package startheap

import (
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strconv"
	"testing"
	"time"
)

func gogc() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// The test runs in a child process so that it sees the state left by
// init before anything else in the test binary collected.
func TestStartingHeap(t *testing.T) {
	if os.Getenv("STARTHEAP_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStartingHeap$", "-test.v")
		cmd.Env = append(withoutGCEnv(), "STARTHEAP_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	if n := gcCycles(); n != 0 {
		t.Fatalf("%d collections ran before the heap reached %d bytes", n, StartingHeap)
	}
	if got, want := gogc(), int64(100*StartingHeap/defaultHeapGoal); got != want || Restored() {
		t.Fatalf("at start GOGC = %d (restored %v), want %d", got, Restored(), want)
	}
	// The first collection restores the default GOGC.
	runtime.GC()
	deadline := time.Now().Add(10 * time.Second)
	for !Restored() {
		if time.Now().After(deadline) {
			t.Fatal("GOGC not restored after the first collection")
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if got := gogc(); got != 100 {
		t.Fatalf("after the first collection GOGC = %d, want 100", got)
	}
}

// GOGC from the environment is left alone.
func TestEnvironmentGOGC(t *testing.T) {
	if v := os.Getenv("STARTHEAP_GOGC_CHILD"); v != "" {
		want, _ := strconv.ParseInt(v, 10, 64)
		if got := gogc(); got != want || !Restored() {
			t.Fatalf("GOGC=%d in the environment, runtime has %d (restored %v)", want, got, Restored())
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestEnvironmentGOGC$", "-test.v")
	cmd.Env = append(withoutGCEnv(), "GOGC=150", "STARTHEAP_GOGC_CHILD=150")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func withoutGCEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if len(kv) >= 5 && (kv[:5] == "GOGC=" || (len(kv) >= 11 && kv[:11] == "GOMEMLIMIT=")) {
			continue
		}
		env = append(env, kv)
	}
	return env
}
