package registry_e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func token(t testing.TB, s *server, user, pass, scope string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/token?service=moat&scope="+scope, nil)
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tk struct {
		Token string `json:"token"`
	}
	json.NewDecoder(resp.Body).Decode(&tk)
	if tk.Token == "" {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	return tk.Token
}

func req(t testing.TB, s *server, tok, method, path string, body io.Reader, hdr ...string) *http.Response {
	t.Helper()
	r, _ := http.NewRequest(method, "http://"+s.addr+path, body)
	r.Header.Set("Authorization", "Bearer "+tok)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// slowBody starts a request whose body the test feeds by hand; it returns
// the writer and a channel with the response (or error).
func slowBody(t testing.TB, s *server, tok, method, path string, hdr ...string) (*io.PipeWriter, chan *http.Response) {
	pr, pw := io.Pipe()
	ch := make(chan *http.Response, 1)
	go func() {
		r, _ := http.NewRequest(method, "http://"+s.addr+path, pr)
		r.Header.Set("Authorization", "Bearer "+tok)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			ch <- nil
			return
		}
		ch <- resp
	}()
	return pw, ch
}

func waitFileSize(t testing.TB, dir, prefix string, min int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) {
				if fi, err := e.Info(); err == nil && fi.Size() >= min {
					return
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no upload file %s* of %d bytes in %s", prefix, min, dir)
}

func shaOf(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

// TestKill9MidPush kills the registry (SIGKILL) in the middle of a
// monolithic and a chunked upload, restarts it, and checks that no partial
// blob or tag is visible, that no stray temp files remain, and that the
// chunked upload resumes from its last complete chunk.
func TestKill9MidPush(t *testing.T) {
	data := t.TempDir()
	s := startServe(t, data, []string{"MOAT_ADMIN_PASSWORD=adminpw"})
	tok := token(t, s, "admin", "adminpw", "repository:team/app:pull,push")
	blob := bytes.Repeat([]byte("moat crash test "), 1<<16) // 1 MiB
	dg := shaOf(blob)
	chunk := 256 << 10

	// A chunked upload: first chunk complete, second chunk half sent.
	resp := req(t, s, tok, "POST", "/v2/team/app/blobs/uploads/", nil)
	loc := resp.Header.Get("Location")
	resp.Body.Close()
	resp = req(t, s, tok, "PATCH", loc, bytes.NewReader(blob[:chunk]), "Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("0-%d", chunk-1))
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("chunk 1: %d", resp.StatusCode)
	}
	id := loc[strings.LastIndex(loc, "/")+1:]
	pw1, _ := slowBody(t, s, tok, "PATCH", loc, "Content-Type", "application/octet-stream")
	pw1.Write(blob[chunk : chunk+100000])
	waitFileSize(t, filepath.Join(data, "uploads"), id, int64(chunk+100000))

	// A monolithic upload, half sent.
	pw2, _ := slowBody(t, s, tok, "POST", "/v2/team/app/blobs/uploads/?digest="+dg, "Content-Type", "application/octet-stream")
	pw2.Write(blob[:len(blob)/2])
	waitFileSize(t, filepath.Join(data, "uploads"), "mono-", int64(len(blob)/2))

	s.cmd.Process.Kill()
	<-s.exited
	pw1.Close()
	pw2.Close()

	s2 := startServe(t, data, nil)
	tok = token(t, s2, "admin", "adminpw", "repository:team/app:pull,push")
	resp = req(t, s2, tok, "HEAD", "/v2/team/app/blobs/"+dg, nil)
	if resp.StatusCode != 404 {
		t.Errorf("partial blob visible after crash: %d", resp.StatusCode)
	}
	resp = req(t, s2, tok, "GET", "/v2/team/app/tags/list", nil)
	var tl struct{ Tags []string }
	json.NewDecoder(resp.Body).Decode(&tl)
	resp.Body.Close()
	if len(tl.Tags) != 0 {
		t.Errorf("tags after crash: %v", tl.Tags)
	}
	filepath.WalkDir(filepath.Join(data, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("blob file after crash: %s", p)
		}
		return nil
	})
	ents, _ := os.ReadDir(filepath.Join(data, "uploads"))
	for _, e := range ents {
		if e.Name() != id {
			t.Errorf("stray upload file after restart: %s", e.Name())
		}
	}
	// The chunked upload resumes from the last complete chunk.
	resp = req(t, s2, tok, "GET", loc, nil)
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Range") != fmt.Sprintf("0-%d", chunk-1) {
		t.Fatalf("upload status after crash: %d %q", resp.StatusCode, resp.Header.Get("Range"))
	}
	resp = req(t, s2, tok, "PATCH", loc, bytes.NewReader(blob[chunk:]), "Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("%d-%d", chunk, len(blob)-1))
	resp.Body.Close()
	resp = req(t, s2, tok, "PUT", loc+"?digest="+dg, nil)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("finishing the resumed upload: %d", resp.StatusCode)
	}
	resp = req(t, s2, tok, "GET", "/v2/team/app/blobs/"+dg, nil)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if shaOf(got) != dg {
		t.Fatal("resumed blob content differs")
	}
}

// TestSIGTERMFinishesUpload sends SIGTERM while a chunk is being
// uploaded; the server stops accepting new work but completes the upload.
func TestSIGTERMFinishesUpload(t *testing.T) {
	data := t.TempDir()
	s := startServe(t, data, []string{"MOAT_ADMIN_PASSWORD=adminpw"})
	tok := token(t, s, "admin", "adminpw", "repository:team/app:pull,push")
	blob := bytes.Repeat([]byte("graceful "), 100000)
	resp := req(t, s, tok, "POST", "/v2/team/app/blobs/uploads/", nil)
	loc := resp.Header.Get("Location")
	resp.Body.Close()
	id := loc[strings.LastIndex(loc, "/")+1:]
	pw, ch := slowBody(t, s, tok, "PUT", loc+"?digest="+shaOf(blob), "Content-Type", "application/octet-stream")
	pw.Write(blob[:len(blob)/2])
	waitFileSize(t, filepath.Join(data, "uploads"), id, int64(len(blob)/2))
	s.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	pw.Write(blob[len(blob)/2:])
	pw.Close()
	resp = <-ch
	if resp == nil || resp.StatusCode != 201 {
		t.Fatalf("upload in flight during shutdown: %v", resp)
	}
	resp.Body.Close()
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("server did not exit")
	}
	s2 := startServe(t, data, nil)
	tok = token(t, s2, "admin", "adminpw", "repository:team/app:pull")
	resp = req(t, s2, tok, "HEAD", "/v2/team/app/blobs/"+shaOf(blob), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("blob uploaded during shutdown missing: %d", resp.StatusCode)
	}
}
