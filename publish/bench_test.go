package publish

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// BenchmarkPublishS3 measures publish throughput to a real S3 server
// (versitygw, POSIX backend in a temp directory, on loopback): an output
// directory of one BALE_BENCH_GIB GiB (default 1) incompressible file and
// its .sha256, published cold (upload in 64 MiB parts, then read back),
// again (every object found and read back) and with TrustExisting (HEAD
// only).
func BenchmarkPublishS3(b *testing.B) {
	gib := 1.0
	if v := os.Getenv("BALE_BENCH_GIB"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			b.Fatalf("BALE_BENCH_GIB=%q: want a positive number", v)
		}
		gib = f
	}
	v := startVersity(b)
	dir := b.TempDir()
	size := int64(gib * (1 << 30))
	f, err := os.Create(filepath.Join(dir, "pack.tar"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	_, sum, err := hashFile(context.Background(), f.Name())
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "pack.tar.sha256"), []byte(sum+"  pack.tar\n"), 0o644)
	ctx := context.Background()
	c := v.client(b)
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bucket := "bench" + strconv.Itoa(i)
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
			b.Fatal(err)
		}
		opts := S3Options{Endpoint: v.endpoint, PathStyle: true}
		timed := func() time.Duration {
			start := time.Now()
			if _, err := S3(ctx, dir, "s3://"+bucket+"/v1", opts); err != nil {
				b.Fatal(err)
			}
			return time.Since(start)
		}
		cold := timed()
		again := timed()
		opts.TrustExisting = true
		trusted := timed()
		mib := float64(size) / (1 << 20)
		b.ReportMetric(mib/cold.Seconds(), "cold-MiB/s")
		b.ReportMetric(mib/again.Seconds(), "again-MiB/s")
		b.ReportMetric(trusted.Seconds(), "trusted-s")
	}
}
