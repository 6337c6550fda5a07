package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/moat-dev/moat/internal/signing"
	// Registers offline signature verification for the policy's
	// signatures rule (moat check, admit, authz).
	_ "github.com/moat-dev/moat/internal/signing/policyverify"
)

// registryFlags are shared by the signing commands.
type registryFlags struct {
	insecure    bool
	plainHTTP   bool
	all         bool // verify: read both the tag and the referrers for every image
	noTag       bool
	noReferrers bool
}

func (f *registryFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.insecure, "insecure", false, "allow plain HTTP (and unverified TLS) to the registry; HTTPS is tried first")
	fl.BoolVar(&f.plainHTTP, "plain-http", false, "speak plain HTTP to the registry without trying HTTPS first (a registry known to serve HTTP)")
	fl.BoolVar(&f.noTag, "no-tag", false, "do not use the cosign sha256-<hex>.sig/.att tag")
	fl.BoolVar(&f.noReferrers, "no-referrers", false, "do not use the OCI 1.1 referrers API")
}

func (f *registryFlags) remote() *signing.Remote {
	return &signing.Remote{Insecure: f.insecure, PlainHTTP: f.plainHTTP, All: f.all, NoTag: f.noTag, NoReferrers: f.noReferrers}
}

func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt)
}

func newSignCmd() *cobra.Command {
	var rf registryFlags
	var keyPath, format string
	var ann []string
	var noTimestamp bool
	cmd := &cobra.Command{
		Use:   "sign IMAGE",
		Short: "Sign an image's manifest digest (cosign format)",
		Long: `Sign resolves IMAGE (a tag or digest) to its manifest digest, signs the
cosign "simple signing" payload for that digest with --key, and stores the
signature in the registry both as the cosign sha256-<hex>.sig tag and as an
OCI 1.1 referrer, so cosign, moat and referrers-aware clients find it.
Annotations given with -a are signed with it; moat also records the signing
time (moat.dev/signed-at) unless --no-timestamp.

` + passphraseHelp + `
Registry credentials come from ~/.docker/config.json.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			annotations, err := parseAnnotations(ann)
			if err != nil {
				return err
			}
			if err := checkFormat(format); err != nil {
				return err
			}
			key, err := loadSigningKey(cmd, keyPath)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			res, err := rf.remote().Sign(ctx, args[0], key, signing.SignOptions{Annotations: annotations, NoTimestamp: noTimestamp})
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Signed %s@%s with key %s\n", res.Image, res.Digest, res.Fingerprint)
			if res.Tag != "" {
				fmt.Fprintf(w, "  signature tag: %s\n", res.Tag)
			}
			if res.Referrer != "" {
				fmt.Fprintf(w, "  referrer:      %s@%s\n", res.Image, res.Referrer)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&keyPath, "key", "", "private key file (cosign or PEM)")
	fl.StringArrayVarP(&ann, "annotations", "a", nil, "annotation key=value to sign with the image (repeatable)")
	fl.BoolVar(&noTimestamp, "no-timestamp", false, "do not record the signing time in the payload")
	fl.StringVarP(&format, "format", "f", "table", "output format: table or json")
	rf.add(cmd)
	return cmd
}

func newVerifyCmd() *cobra.Command {
	var rf registryFlags
	var keys, format string
	var ann []string
	cmd := &cobra.Command{
		Use:   "verify IMAGE...",
		Short: "Verify image signatures offline with trusted public keys",
		Long: `Verify fetches the signatures of each IMAGE from the registry and checks
them offline: a signature passes when it verifies with one of the trusted
keys and its payload names the image's manifest digest. It reads the cosign
sha256-<hex>.sig tag, and the OCI 1.1 referrers API when the tag holds no
valid signature (--all, or -a, reads both and lists every signature). No
transparency log or other network service is consulted.

--key is a public key file, a directory of *.pub/*.pem files, or a
comma-separated list of either. With -a, a passing signature must also
carry those annotations.

Exit codes: 0 every image verified, 1 some image has no valid signature,
2 error (registry unreachable, bad key file, ...).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			want, err := parseAnnotations(ann)
			if err != nil {
				return err
			}
			trusted, err := signing.LoadPublicKeys(keys)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			r := rf.remote()
			// A signature carrying the required annotations may be any
			// of them: look everywhere.
			r.All = r.All || len(want) > 0
			if len(args) > 1 {
				r.Prepare(ctx, args) // one registry handshake for all the images
			}
			// Images are verified concurrently (at most 8 at once); results
			// keep the order of the arguments.
			results := make([]*signing.VerifyResult, len(args))
			errs := make([]error, len(args))
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(8)
			for i, ref := range args {
				g.Go(func() error {
					res, err := r.Verify(gctx, ref, trusted)
					if err != nil && !signing.IsVerificationError(err) {
						return err
					}
					if res.Verified && len(want) > 0 {
						requireAnnotations(res, want)
						if !res.Verified {
							err = fmt.Errorf("no valid signature for %s@%s carries the annotations %s", res.Image, res.Digest, strings.Join(ann, ", "))
						}
					}
					results[i], errs[i] = res, err
					return nil
				})
			}
			if err := g.Wait(); err != nil {
				return err
			}
			var failed []string
			for _, err := range errs {
				if err != nil {
					failed = append(failed, err.Error())
				}
			}
			if format == "json" {
				if err := writeJSON(cmd.OutOrStdout(), results); err != nil {
					return err
				}
			} else {
				writeVerifyTable(cmd.OutOrStdout(), results)
			}
			if len(failed) > 0 {
				return &gateError{msg: strings.Join(failed, "; ")}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&keys, "key", "", "trusted public key: file, directory or comma-separated list (required)")
	fl.StringArrayVarP(&ann, "annotations", "a", nil, "require annotation key=value on the signature (repeatable)")
	fl.StringVarP(&format, "format", "f", "table", "output format: table or json")
	fl.BoolVar(&rf.all, "all", false, "read the referrers API too when the cosign tag already holds a valid signature (list every signature)")
	rf.add(cmd)
	cmd.MarkFlagRequired("key")
	return cmd
}

// requireAnnotations unmarks signatures that lack the wanted annotations.
func requireAnnotations(res *signing.VerifyResult, want map[string]string) {
	res.Verified = false
	for i := range res.Signatures {
		s := &res.Signatures[i]
		if !s.Verified {
			continue
		}
		for k, v := range want {
			if s.Annotations[k] != v {
				s.Verified = false
				s.Error = fmt.Sprintf("missing annotation: %s=%s", k, v)
				break
			}
		}
		res.Verified = res.Verified || s.Verified
	}
}

func writeVerifyTable(out io.Writer, results []*signing.VerifyResult) {
	w := bufio.NewWriter(out) // one write, not one per table cell
	defer w.Flush()
	for _, res := range results {
		status := "VERIFIED"
		if !res.Verified {
			status = "FAILED"
		}
		fmt.Fprintf(w, "%s@%s: %s\n", res.Image, res.Digest, status)
		if len(res.Signatures) == 0 {
			fmt.Fprintln(w, "  no signatures found (looked in the .sig tag and the referrers API)")
			continue
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  RESULT\tKEY\tSIGNED AT\tANNOTATIONS\tFOUND IN")
		for _, s := range res.Signatures {
			r := "ok"
			if !s.Verified {
				r = s.Error
			}
			key := s.Key
			if key == "" {
				key = "-"
			} else if s.KeySource != "" {
				key += " (" + s.KeySource + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r, key, orDash(s.SignedAt), orDash(formatAnnotations(s.Annotations)), strings.Join(s.Sources, ", "))
		}
		tw.Flush()
	}
}

func formatAnnotations(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func parseAnnotations(list []string) (map[string]string, error) {
	out := map[string]string{}
	for _, a := range list {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("annotation %q: want key=value", a)
		}
		out[k] = v
	}
	return out, nil
}

func checkFormat(f string) error {
	if f != "table" && f != "json" {
		return fmt.Errorf("unknown --format %q: use table or json", f)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
