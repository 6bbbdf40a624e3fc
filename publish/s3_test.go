package publish

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/testsupport/tooltest"
)

// versity is a versitygw S3 server with a POSIX backend in a temp
// directory, behind a proxy that counts object writes.
type versity struct {
	endpoint string
	root     string
	puts     atomic.Int64
}

func startVersity(t testing.TB) *versity {
	t.Helper()
	bin := tooltest.Require(t, "versitygw")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	root := t.TempDir()
	meta := t.TempDir()
	cmd := exec.Command(bin, "--access", "bale-test", "--secret", "bale-test-secret", "--port", addr, "posix", "--sidecar", meta, root)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not listen on %s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	v := &versity{root: root}
	target, _ := url.Parse("http://" + addr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut || r.Method == http.MethodPost {
			v.puts.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	v.endpoint = srv.URL
	t.Setenv("AWS_ACCESS_KEY_ID", "bale-test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "bale-test-secret")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return v
}

func (v *versity) client(t testing.TB) *s3.Client {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(v.endpoint)
		o.UsePathStyle = true
	})
}

// outDir writes a small output directory: a pack-sized file that takes
// several parts, a small one, their .sha256 files and a SHA256SUMS.
func outDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	big := make([]byte, 11<<20+123)
	rand.Read(big)
	files := map[string][]byte{"pack.tar": big, "notes.txt": []byte("hello\n")}
	var sums strings.Builder
	for _, name := range []string{"notes.txt", "pack.tar"} {
		b := files[name]
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		line := hexSum(b) + "  " + name + "\n"
		sums.WriteString(line)
		if err := os.WriteFile(filepath.Join(dir, name+".sha256"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, kit.SumsName), []byte(sums.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestS3 publishes to a real S3 server (versitygw): every object arrives
// with its checksum, a download passes sha256sum -c, a second publish
// uploads nothing, and an object corrupted on the server is found and
// repaired.
func TestS3(t *testing.T) {
	v := startVersity(t)
	ctx := context.Background()
	c := v.client(t)
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("releases")}); err != nil {
		t.Fatal(err)
	}
	dir := outDir(t)
	opts := S3Options{Endpoint: v.endpoint, PathStyle: true, PartSize: 5 << 20}
	rep, err := S3(ctx, dir, "s3://releases/v1", opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Uploaded != 5 || rep.Existing != 0 {
		t.Fatalf("first publish: %+v", rep)
	}
	// The checksum files were published last.
	if n := len(rep.Files); rep.Files[n-1].Path != "pack.tar.sha256" || rep.Files[n-3].Path != kit.SumsName || rep.Files[0].Path != "notes.txt" {
		t.Errorf("publish order: %+v", rep.Files)
	}
	// Download with the SDK, as a reader would, and check with sha256sum.
	dl := t.TempDir()
	for _, f := range rep.Files {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("releases"), Key: aws.String("v1/" + f.Path)})
		if err != nil {
			t.Fatal(err)
		}
		b := new(bytes.Buffer)
		b.ReadFrom(out.Body)
		out.Body.Close()
		if err := os.WriteFile(filepath.Join(dl, f.Path), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("releases"), Key: aws.String("v1/" + f.Path), ChecksumMode: "ENABLED"})
		if err != nil {
			t.Fatal(err)
		}
		if head.Metadata[MetaSHA256] != f.SHA256 || aws.ToString(head.ChecksumSHA256) == "" {
			t.Errorf("%s: metadata %v checksum %q, want sha256 %s and an x-amz-checksum-sha256", f.Path, head.Metadata, aws.ToString(head.ChecksumSHA256), f.SHA256)
		}
	}
	if sha, ok := tooltest.Find(t, "sha256sum"); ok {
		cmd := exec.Command(sha, "-c", kit.SumsName)
		cmd.Dir = dl
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c: %v\n%s", err, out)
		}
	}

	before := v.puts.Load()
	rep2, err := S3(ctx, dir, "s3://releases/v1", opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := v.puts.Load() - before; n != 0 || rep2.Uploaded != 0 || rep2.Existing != 5 {
		t.Errorf("second publish: %d PUT/POST requests, report %+v; want none and 5 existing", n, rep2)
	}

	// Corrupt the object on the server's disk: the read-back finds it and
	// the publish uploads it again.
	obj := filepath.Join(v.root, "releases", "v1", "pack.tar")
	b, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(obj, b, 0o644); err != nil {
		t.Fatal(err)
	}
	rep3, err := S3(ctx, dir, "s3://releases/v1", opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep3.Repaired != 1 || rep3.Files[1].Path != "pack.tar" || rep3.Files[1].Action != "repaired" {
		t.Errorf("after corruption: %+v, want pack.tar repaired", rep3)
	}
	fixed, _ := os.ReadFile(obj)
	orig, _ := os.ReadFile(filepath.Join(dir, "pack.tar"))
	if !bytes.Equal(fixed, orig) {
		t.Error("the corrupted object was not replaced")
	}
	// With read-back off, the corruption goes unseen: the check is what
	// catches it.
	fixed[0] ^= 0xff
	os.WriteFile(obj, fixed, 0o644)
	opts.TrustExisting = true
	rep4, err := S3(ctx, dir, "s3://releases/v1", opts)
	if err != nil || rep4.Repaired != 0 {
		t.Errorf("trusting existing objects: %v %+v", err, rep4)
	}
}

// TestCollectRefuses: a directory whose sums disagree with its files, or
// that holds a symbolic link, is not published.
func TestCollectRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(dir string)
		wantErr string
	}{
		{"changed file", func(dir string) { os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("HELLO\n"), 0o644) }, "the sums say"},
		{"symlink", func(dir string) { os.Symlink("/etc/passwd", filepath.Join(dir, "passwd")) }, "not a regular file"},
		{"sums name a missing file", func(dir string) { os.Remove(filepath.Join(dir, "notes.txt")) }, "not among the files"},
		{"bad sums line", func(dir string) { os.WriteFile(filepath.Join(dir, kit.SumsName), []byte("nonsense\n"), 0o644) }, "not a sha256sum line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := outDir(t)
			tc.mutate(dir)
			if _, err := Collect(context.Background(), dir); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Collect: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
