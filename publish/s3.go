package publish

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/sync/errgroup"
)

// S3Options configure a publish to an S3 bucket.
type S3Options struct {
	// Endpoint is an S3-compatible server's URL; "" means AWS.
	Endpoint string
	// PathStyle addresses the bucket in the path, not the host name, as
	// most S3-compatible servers want.
	PathStyle bool
	// Jobs bounds concurrent uploads; 0 means DefaultJobs.
	Jobs int
	// PartSize is the multipart part size, and the size above which a
	// file is uploaded in parts; 0 means DefaultPartSize.
	PartSize int64
	// TrustExisting skips reading back objects already present with the
	// file's checksum.
	TrustExisting bool
	// NewHTTPClient, if set, makes the client the SDK uses over base, the
	// transport the SDK configured (a CA bundle from AWS_CA_BUNDLE or the
	// shared config included): bale passes source's, so every S3 request
	// keeps the network limits.
	NewHTTPClient func(base http.RoundTripper) (*http.Client, error)
}

// DefaultPartSize is the multipart part size: S3 allows 10,000 parts, so
// files up to 640 GB.
const DefaultPartSize = 64 << 20

// MetaSHA256 is the user metadata key holding an object's hex sha256:
// S3 keeps a full-object x-amz-checksum-sha256 only for single-part
// uploads (a multipart one has a checksum of part checksums), so this is
// what tells an existing object is the file.
const MetaSHA256 = "sha256"

// ParseS3 splits s3://BUCKET[/PREFIX] into bucket and prefix.
func ParseS3(to string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(to, "s3://")
	if !ok {
		return "", "", fmt.Errorf("destination %q: want s3://BUCKET[/PREFIX]", to)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	prefix = strings.Trim(prefix, "/")
	if bucket == "" || strings.ContainsAny(bucket, " \\") {
		return "", "", fmt.Errorf("destination %q: want s3://BUCKET[/PREFIX]", to)
	}
	return bucket, prefix, nil
}

// S3 publishes the files of dir (see Collect) to s3://BUCKET/PREFIX with
// credentials and region from the standard AWS chain (environment, shared
// config and credentials files, SSO, instance roles). Each object carries
// x-amz-checksum-sha256 (each part, for multipart uploads) and its hex
// sha256 as metadata; an object already there with the file's sha256 and
// size is skipped, and read back unless TrustExisting; every object
// uploaded is read back and hashed. An object whose bytes on the server
// are not the file's is uploaded again and reported as repaired.
func S3(ctx context.Context, dir, to string, opts S3Options) (*Report, error) {
	bucket, prefix, err := ParseS3(to)
	if err != nil {
		return nil, err
	}
	if opts.Jobs <= 0 {
		opts.Jobs = DefaultJobs
	}
	if opts.PartSize <= 0 {
		opts.PartSize = DefaultPartSize
	}
	if opts.PartSize < 5<<20 {
		return nil, fmt.Errorf("part size %d: S3 wants at least 5 MiB", opts.PartSize)
	}
	files, err := Collect(ctx, dir)
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("publish to %s: AWS configuration: %w", to, err)
	}
	if opts.NewHTTPClient != nil {
		var base http.RoundTripper = http.DefaultTransport.(*http.Transport).Clone()
		if bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok {
			base = bc.GetTransport()
		}
		c, err := opts.NewHTTPClient(base)
		if err != nil {
			return nil, fmt.Errorf("publish to %s: %w", to, err)
		}
		cfg.HTTPClient = c
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.PathStyle
		// The read-back hashes every byte itself; the SDK's own response
		// validation would turn a corrupted object into a read error
		// instead of a mismatch that can be repaired.
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	u := &s3Uploader{c: client, bucket: bucket, opts: opts}
	rep := &Report{To: to, Files: files}
	// Data files concurrently, then the checksum files, so the sums never
	// name an object that is not there.
	split := len(files)
	for i, f := range files {
		if isSums(f.Path) {
			split = i
			break
		}
	}
	for _, group := range [][]File{files[:split], files[split:]} {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(opts.Jobs)
		for i := range group {
			f := &group[i]
			f.Location = path.Join(prefix, f.Path)
			g.Go(func() error {
				if err := u.publish(gctx, f); err != nil {
					return fmt.Errorf("publish %s to s3://%s/%s: %w", f.Path, bucket, f.Location, err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
	}
	rep.count()
	return rep, nil
}

type s3Uploader struct {
	c      *s3.Client
	bucket string
	opts   S3Options
}

// publish puts one file unless it is there, then checks what is there.
func (u *s3Uploader) publish(ctx context.Context, f *File) error {
	present, err := u.present(ctx, f)
	if err != nil {
		return err
	}
	if present {
		f.Action = "existing"
		if u.opts.TrustExisting {
			return nil
		}
		err := u.readBack(ctx, f)
		if err == nil {
			return nil
		}
		var bad *mismatchError
		if !errors.As(err, &bad) {
			return err
		}
		f.Action = "repaired"
	} else {
		f.Action = "uploaded"
	}
	if err := u.upload(ctx, f); err != nil {
		return err
	}
	return u.readBack(ctx, f)
}

// present reports whether the object exists with the file's size and
// sha256 (metadata, and the full-object checksum when there is one).
func (u *s3Uploader) present(ctx context.Context, f *File) (bool, error) {
	out, err := u.c.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: &u.bucket, Key: &f.Location, ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
			return false, nil
		}
		return false, fmt.Errorf("head: %w", err)
	}
	if aws.ToInt64(out.ContentLength) != f.Size || out.Metadata[MetaSHA256] != f.SHA256 {
		return false, nil
	}
	if c := aws.ToString(out.ChecksumSHA256); c != "" && !strings.Contains(c, "-") && c != b64(f.SHA256) {
		return false, nil
	}
	return true, nil
}

// upload puts the file, in one request or in parts.
func (u *s3Uploader) upload(ctx context.Context, f *File) error {
	file, err := os.Open(f.abs)
	if err != nil {
		return err
	}
	defer file.Close()
	meta := map[string]string{MetaSHA256: f.SHA256}
	if f.Size <= u.opts.PartSize {
		_, err := u.c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &u.bucket, Key: &f.Location,
			Body:           io.NewSectionReader(file, 0, f.Size),
			ContentLength:  aws.Int64(f.Size),
			ChecksumSHA256: aws.String(b64(f.SHA256)),
			Metadata:       meta,
		})
		if err != nil {
			return fmt.Errorf("put: %w", err)
		}
		return nil
	}
	mp, err := u.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &u.bucket, Key: &f.Location, ChecksumAlgorithm: types.ChecksumAlgorithmSha256, Metadata: meta,
	})
	if err != nil {
		return fmt.Errorf("start multipart upload: %w", err)
	}
	abort := func(err error) error {
		// The parts would otherwise stay on the server, billed, until a
		// lifecycle rule removes them.
		_, aerr := u.c.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: &u.bucket, Key: &f.Location, UploadId: mp.UploadId})
		return errors.Join(err, aerr)
	}
	var parts []types.CompletedPart
	for off, n := int64(0), int32(1); off < f.Size; off, n = off+u.opts.PartSize, n+1 {
		size := min(u.opts.PartSize, f.Size-off)
		sec := io.NewSectionReader(file, off, size)
		h := sha256.New()
		if _, err := io.Copy(h, sec); err != nil {
			return abort(err)
		}
		sum := base64.StdEncoding.EncodeToString(h.Sum(nil))
		out, err := u.c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &u.bucket, Key: &f.Location, UploadId: mp.UploadId, PartNumber: aws.Int32(n),
			Body: io.NewSectionReader(file, off, size), ContentLength: aws.Int64(size), ChecksumSHA256: aws.String(sum),
		})
		if err != nil {
			return abort(fmt.Errorf("upload part %d: %w", n, err))
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n), ChecksumSHA256: aws.String(sum)})
	}
	_, err = u.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &u.bucket, Key: &f.Location, UploadId: mp.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return abort(fmt.Errorf("complete multipart upload: %w", err))
	}
	return nil
}

// mismatchError is an object whose bytes are not the file's.
type mismatchError struct{ detail string }

func (e *mismatchError) Error() string { return e.detail }

// readBack fetches the object and hashes it.
func (u *s3Uploader) readBack(ctx context.Context, f *File) error {
	out, err := u.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &u.bucket, Key: &f.Location})
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	defer out.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(out.Body, f.Size+1))
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != f.Size || got != f.SHA256 {
		return &mismatchError{fmt.Sprintf("read back: the object has %d bytes with sha256 %s, the file %d bytes with sha256 %s", n, got, f.Size, f.SHA256)}
	}
	return nil
}

// b64 turns a hex sha256 into the base64 form S3 checksums take.
func b64(hexSum string) string {
	b, _ := hex.DecodeString(hexSum)
	return base64.StdEncoding.EncodeToString(b)
}
