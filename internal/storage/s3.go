package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// S3Config configures an S3-compatible bucket.
type S3Config struct {
	Bucket    string
	Prefix    string
	Endpoint  string // host[:port] or a URL (http:// selects plain HTTP)
	Region    string
	AccessKey string
	SecretKey string
	Insecure  bool // plain HTTP
}

// ParseS3URL parses "s3://bucket/prefix" into a config (other fields empty).
func ParseS3URL(raw string) (S3Config, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return S3Config{}, fmt.Errorf("storage %q: want s3://bucket[/prefix]", raw)
	}
	return S3Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/")}, nil
}

// s3PartSize is the size of each part of a multipart upload; files smaller
// than this go up in a single PutObject. A variable so tests can lower it to
// the S3 minimum of 5 MiB.
var s3PartSize int64 = 64 << 20

// S3 stores blobs as objects <prefix>/blobs/<alg>/<hex[:2]>/<hex>.
type S3 struct {
	c      *s3.Client
	bucket string
	prefix string
}

// NewS3 connects to an S3-compatible endpoint and checks the bucket exists.
// Custom endpoints are addressed path-style (bucket in the path), which every
// S3-compatible server supports; the default AWS endpoint is used
// virtual-hosted style.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	var base string
	switch ep := cfg.Endpoint; {
	case strings.Contains(ep, "://"):
		u, err := url.Parse(ep)
		if err != nil {
			return nil, fmt.Errorf("s3 endpoint %q: %w", ep, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("s3 endpoint %q: want host[:port], http://host[:port] or https://host[:port]", ep)
		}
		base = u.Scheme + "://" + u.Host
	case ep != "" && cfg.Insecure:
		base = "http://" + ep
	case ep != "":
		base = "https://" + ep
	case cfg.Insecure:
		// Plain HTTP to AWS itself, as asked; still virtual-hosted style.
		base = "http://s3." + region + ".amazonaws.com"
	}
	o := s3.Options{Region: region}
	if cfg.AccessKey != "" || cfg.SecretKey != "" {
		o.Credentials = credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, "")
	} else {
		o.Credentials = aws.AnonymousCredentials{}
	}
	if base != "" {
		o.BaseEndpoint = aws.String(base)
		o.UsePathStyle = cfg.Endpoint != ""
	}
	o.DisableLogOutputChecksumValidationSkipped = true
	c := s3.New(o)
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.Bucket)}); err != nil {
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) && re.Response != nil {
			switch re.Response.StatusCode {
			case http.StatusNotFound:
				return nil, fmt.Errorf("s3 bucket %q does not exist at %s: create it first or fix the bucket name", cfg.Bucket, endpointName(base))
			case http.StatusMovedPermanently:
				if r := re.Response.Header.Get("X-Amz-Bucket-Region"); r != "" && r != region {
					return nil, fmt.Errorf("s3 bucket %q is in region %s, not %s: set the S3 region to %s", cfg.Bucket, r, region, r)
				}
			case http.StatusForbidden:
				return nil, fmt.Errorf("s3 bucket %q: access denied (check the access key, secret key and region): %w", cfg.Bucket, err)
			}
		}
		return nil, fmt.Errorf("s3 bucket %q: %w", cfg.Bucket, err)
	}
	return &S3{c: c, bucket: cfg.Bucket, prefix: strings.Trim(cfg.Prefix, "/")}, nil
}

func endpointName(base string) string {
	if base == "" {
		return "AWS"
	}
	return base
}

func (s *S3) key(digest string) (string, error) {
	alg, h, err := ParseDigest(digest)
	if err != nil {
		return "", err
	}
	return path.Join(s.prefix, "blobs", alg, h[:2], h), nil
}

// isNoSuchKey reports whether err says the object is not there.
func isNoSuchKey(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return true
		}
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.Response != nil && re.Response.StatusCode == http.StatusNotFound
}

func (s *S3) Stat(ctx context.Context, digest string) (int64, error) {
	k, err := s.key(digest)
	if err != nil {
		return 0, err
	}
	return s.size(ctx, k)
}

func (s *S3) size(ctx context.Context, k string) (int64, error) {
	out, err := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(k)})
	if isNoSuchKey(err) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	return aws.ToInt64(out.ContentLength), nil
}

func (s *S3) Open(ctx context.Context, digest string) (Content, error) {
	k, err := s.key(digest)
	if err != nil {
		return nil, err
	}
	n, err := s.size(ctx, k)
	if err != nil {
		return nil, err
	}
	return &s3Object{ctx: ctx, s: s, key: k, size: n}, nil
}

// s3Object reads an object lazily: Seek only records the offset, and the
// next Read opens a GET from there (ranged when the offset is not zero).
type s3Object struct {
	ctx  context.Context
	s    *S3
	key  string
	size int64
	off  int64
	body io.ReadCloser
}

func (o *s3Object) Read(p []byte) (int, error) {
	if o.off >= o.size {
		return 0, io.EOF
	}
	if o.body == nil {
		in := &s3.GetObjectInput{Bucket: aws.String(o.s.bucket), Key: aws.String(o.key)}
		if o.off > 0 {
			in.Range = aws.String("bytes=" + strconv.FormatInt(o.off, 10) + "-")
		}
		out, err := o.s.c.GetObject(o.ctx, in)
		if isNoSuchKey(err) {
			return 0, ErrNotFound
		}
		if err != nil {
			return 0, err
		}
		o.body = out.Body
	}
	if rest := o.size - o.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := o.body.Read(p)
	o.off += int64(n)
	if err == io.EOF {
		o.body.Close()
		o.body = nil
		if o.off < o.size {
			return n, io.ErrUnexpectedEOF
		}
		if n > 0 {
			err = nil
		}
	}
	return n, err
}

func (o *s3Object) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = o.off + offset
	case io.SeekEnd:
		abs = o.size + offset
	default:
		return 0, fmt.Errorf("seek: invalid whence %d", whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("seek: negative position %d", abs)
	}
	if abs != o.off && o.body != nil {
		o.body.Close()
		o.body = nil
	}
	o.off = abs
	return abs, nil
}

func (o *s3Object) Close() error {
	if o.body != nil {
		err := o.body.Close()
		o.body = nil
		return err
	}
	return nil
}

// Commit uploads the verified local file, then removes it. An object becomes
// visible only once complete: a single PUT for files below s3PartSize, else
// a multipart upload that is aborted on any error.
func (s *S3) Commit(ctx context.Context, digest string, p string) error {
	k, err := s.key(digest)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < s3PartSize {
		_, err = s.c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(s.bucket), Key: aws.String(k), Body: f,
			ContentLength: aws.Int64(fi.Size()), ContentType: aws.String("application/octet-stream"),
		})
	} else {
		err = s.multipart(ctx, k, f, fi.Size())
	}
	if err != nil {
		return fmt.Errorf("s3 put %s: %w", k, err)
	}
	f.Close()
	return os.Remove(p)
}

func (s *S3) multipart(ctx context.Context, k string, f *os.File, size int64) (err error) {
	cr, err := s.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(k), ContentType: aws.String("application/octet-stream"),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			// Abort even when ctx was cancelled, so no parts linger.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if _, aerr := s.c.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
				Bucket: aws.String(s.bucket), Key: aws.String(k), UploadId: cr.UploadId,
			}); aerr != nil {
				err = fmt.Errorf("%w (aborting the upload also failed: %v)", err, aerr)
			}
		}
	}()
	var parts []types.CompletedPart
	for off, num := int64(0), int32(1); off < size; off, num = off+s3PartSize, num+1 {
		n := min(s3PartSize, size-off)
		up, err := s.c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(s.bucket), Key: aws.String(k), UploadId: cr.UploadId,
			PartNumber: aws.Int32(num), Body: io.NewSectionReader(f, off, n), ContentLength: aws.Int64(n),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
		})
		if err != nil {
			return fmt.Errorf("part %d: %w", num, err)
		}
		parts = append(parts, types.CompletedPart{ETag: up.ETag, PartNumber: aws.Int32(num), ChecksumCRC32: up.ChecksumCRC32})
	}
	_, err = s.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(k), UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	return err
}

func (s *S3) Delete(ctx context.Context, digest string) error {
	k, err := s.key(digest)
	if err != nil {
		return err
	}
	_, err = s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(k)})
	if err != nil && !isNoSuchKey(err) {
		return err
	}
	return nil
}

func (s *S3) Walk(ctx context.Context, fn func(string, int64, time.Time) error) error {
	base := path.Join(s.prefix, "blobs") + "/"
	pg := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(base)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, oi := range page.Contents {
			rest := strings.TrimPrefix(aws.ToString(oi.Key), base)
			parts := strings.Split(rest, "/")
			if len(parts) != 3 {
				continue
			}
			dg := parts[0] + ":" + parts[2]
			if _, _, err := ParseDigest(dg); err != nil {
				continue
			}
			if err := fn(dg, aws.ToInt64(oi.Size), aws.ToTime(oi.LastModified)); err != nil {
				return err
			}
		}
	}
	return nil
}
