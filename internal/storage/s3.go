package storage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
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

// S3 stores blobs as objects <prefix>/blobs/<alg>/<hex[:2]>/<hex>.
type S3 struct {
	c      *minio.Client
	bucket string
	prefix string
}

// NewS3 connects to an S3-compatible endpoint and checks the bucket exists.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	ep := cfg.Endpoint
	secure := !cfg.Insecure
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return nil, fmt.Errorf("s3 endpoint %q: %w", ep, err)
		}
		secure = u.Scheme == "https"
		ep = u.Host
	}
	if ep == "" {
		ep = "s3.amazonaws.com"
	}
	c, err := minio.New(ep, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: secure,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	ok, err := c.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3 bucket %q: %w", cfg.Bucket, err)
	}
	if !ok {
		return nil, fmt.Errorf("s3 bucket %q does not exist", cfg.Bucket)
	}
	return &S3{c: c, bucket: cfg.Bucket, prefix: strings.Trim(cfg.Prefix, "/")}, nil
}

func (s *S3) key(digest string) (string, error) {
	alg, h, err := ParseDigest(digest)
	if err != nil {
		return "", err
	}
	return path.Join(s.prefix, "blobs", alg, h[:2], h), nil
}

func isNoSuchKey(err error) bool {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.Code == "NoSuchKey" || er.StatusCode == 404
	}
	return false
}

func (s *S3) Stat(ctx context.Context, digest string) (int64, error) {
	k, err := s.key(digest)
	if err != nil {
		return 0, err
	}
	oi, err := s.c.StatObject(ctx, s.bucket, k, minio.StatObjectOptions{})
	if isNoSuchKey(err) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	return oi.Size, nil
}

func (s *S3) Open(ctx context.Context, digest string) (Content, error) {
	k, err := s.key(digest)
	if err != nil {
		return nil, err
	}
	o, err := s.c.GetObject(ctx, s.bucket, k, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	if _, err := o.Stat(); err != nil {
		o.Close()
		if isNoSuchKey(err) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	return o, nil
}

// Commit uploads the verified local file; S3 PUTs are atomic (an object is
// visible only once complete), then the local file is removed.
func (s *S3) Commit(ctx context.Context, digest string, p string) error {
	k, err := s.key(digest)
	if err != nil {
		return err
	}
	if _, err := s.c.FPutObject(ctx, s.bucket, k, p, minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
		return fmt.Errorf("s3 put %s: %w", k, err)
	}
	return os.Remove(p)
}

func (s *S3) Delete(ctx context.Context, digest string) error {
	k, err := s.key(digest)
	if err != nil {
		return err
	}
	err = s.c.RemoveObject(ctx, s.bucket, k, minio.RemoveObjectOptions{})
	if err != nil && !isNoSuchKey(err) {
		return err
	}
	return nil
}

func (s *S3) Walk(ctx context.Context, fn func(string, int64, time.Time) error) error {
	base := path.Join(s.prefix, "blobs") + "/"
	for oi := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: base, Recursive: true}) {
		if oi.Err != nil {
			return oi.Err
		}
		rest := strings.TrimPrefix(oi.Key, base)
		parts := strings.Split(rest, "/")
		if len(parts) != 3 {
			continue
		}
		dg := parts[0] + ":" + parts[2]
		if _, _, err := ParseDigest(dg); err != nil {
			continue
		}
		if err := fn(dg, oi.Size, oi.LastModified); err != nil {
			return err
		}
	}
	return nil
}
