package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/image"
	"github.com/moat-dev/moat/internal/match"
	"github.com/moat-dev/moat/internal/sbom"
	"github.com/moat-dev/moat/internal/scan"
	"github.com/moat-dev/moat/internal/signing"
	"github.com/moat-dev/moat/internal/vulndb"
)

type attestFlags struct {
	registryFlags
	key, typ, predicate, format string
	sourceRepo, commit, builder string
	buildType                   string
	dbDir                       string
}

func newAttestCmd() *cobra.Command {
	var f attestFlags
	cmd := &cobra.Command{
		Use:   "attest IMAGE --key KEY --type sbom|vuln|provenance",
		Short: "Attach a signed in-toto attestation (SBOM, scan result, SLSA provenance)",
		Long: `Attest wraps a predicate in an in-toto Statement v1 whose subject is the
image's manifest digest, signs it as a DSSE envelope with --key, and stores
it as a cosign attestation (the sha256-<hex>.att tag) and as an OCI 1.1
referrer. cosign verify-attestation and moat verify-attestation check it.

Types:
  sbom        CycloneDX 1.6 SBOM from scanning the image (predicate type
              https://cyclonedx.org/bom)
  vuln        the vulnerability findings of the image against the local
              database (moat db update), with the scan date and database
              version (https://cosign.sigstore.dev/attestation/vuln/v1)
  provenance  SLSA provenance v1 (https://slsa.dev/provenance/v1) from
              --source-repo, --commit and --builder-id
With --predicate FILE the predicate is read from FILE (JSON) instead.

` + passphraseHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAttest(cmd, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.key, "key", "", "private key file (cosign or PEM)")
	fl.StringVar(&f.typ, "type", "", "sbom, vuln, provenance, or a predicate type URI (with --predicate)")
	fl.StringVar(&f.predicate, "predicate", "", "read the predicate (JSON) from this file")
	fl.StringVar(&f.sourceRepo, "source-repo", "", "provenance: source repository URI")
	fl.StringVar(&f.commit, "commit", "", "provenance: full git commit the image was built from")
	fl.StringVar(&f.builder, "builder-id", "", "provenance: URI of the builder")
	fl.StringVar(&f.buildType, "build-type", "", "provenance: build type URI (default "+signing.DefaultBuildType+")")
	fl.StringVar(&f.dbDir, "db-dir", "", "vuln: vulnerability database directory (default $"+vulndb.EnvDBDir+" or the user cache)")
	fl.StringVarP(&f.format, "format", "f", "table", "output format: table or json")
	f.registryFlags.add(cmd)
	return cmd
}

func runAttest(cmd *cobra.Command, ref string, f attestFlags) error {
	if err := checkFormat(f.format); err != nil {
		return err
	}
	if f.typ == "" {
		return errors.New("--type is required (sbom, vuln or provenance)")
	}
	ptype, err := signing.PredicateTypeFor(f.typ)
	if err != nil {
		return err
	}
	key, err := loadSigningKey(cmd, f.key)
	if err != nil {
		return err
	}
	ctx, stop := signalContext(cmd.Context())
	defer stop()
	r := f.remote()
	subj, err := r.Resolve(ctx, ref)
	if err != nil {
		return err
	}
	pinned := subj.Ref.String()
	var pred json.RawMessage
	switch {
	case f.predicate != "":
		pred, err = os.ReadFile(f.predicate)
		if err == nil && !json.Valid(pred) {
			err = fmt.Errorf("%s is not JSON", f.predicate)
		}
	case ptype == signing.PredicateCycloneDX:
		var res *scan.Result
		if res, err = scan.Scan(ctx, pinned, scan.Options{Image: image.Options{Insecure: f.insecure}}); err == nil {
			var buf bytes.Buffer
			err = sbom.WriteCycloneDX(&buf, sbomSubject(res), res.Packages, sbom.ToolInfo{Name: "moat", Version: version})
			pred = buf.Bytes()
		}
	case ptype == signing.PredicateVuln:
		pred, err = vulnPredicate(cmd, pinned, f)
	case ptype == signing.PredicateSLSAv1:
		p := signing.Provenance{SourceRepo: f.sourceRepo, Commit: f.commit, BuilderID: f.builder, BuildType: f.buildType}
		if p.Layers, err = r.Layers(ctx, subj); err == nil {
			pred, err = signing.ProvenancePredicate(p)
		}
	default:
		err = fmt.Errorf("--type %s needs --predicate FILE", f.typ)
	}
	if err != nil {
		return err
	}
	res, err := r.Attest(ctx, pinned, key, signing.AttestOptions{PredicateType: ptype, Predicate: pred})
	if err != nil {
		return err
	}
	if f.format == "json" {
		return writeJSON(cmd.OutOrStdout(), res)
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "Attested %s@%s (%s) with key %s\n", res.Image, res.Digest, ptype, res.Fingerprint)
	if res.Tag != "" {
		fmt.Fprintf(w, "  attestation tag: %s\n", res.Tag)
	}
	if res.Referrer != "" {
		fmt.Fprintf(w, "  referrer:        %s@%s\n", res.Image, res.Referrer)
	}
	return nil
}

// vulnPredicate scans the image and matches it against the local database.
func vulnPredicate(cmd *cobra.Command, ref string, f attestFlags) (json.RawMessage, error) {
	dir, err := vulndb.ResolveDir(f.dbDir)
	if err != nil {
		return nil, err
	}
	db, err := vulndb.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("vulnerability database: %w (run moat db update, or give --predicate FILE)", err)
	}
	defer db.Close()
	started := time.Now()
	res, err := scan.Scan(cmd.Context(), ref, scan.Options{Image: image.Options{Insecure: f.insecure}})
	if err != nil {
		return nil, err
	}
	m, err := match.Matcher{DB: db}.Match(cmd.Context(), res.Packages)
	if err != nil {
		return nil, err
	}
	// The database version: each ecosystem with the time it was updated.
	var parts []string
	for _, md := range db.Meta() {
		parts = append(parts, md.Ecosystem+"@"+md.Updated.UTC().Format(time.RFC3339))
	}
	sort.Strings(parts)
	return signing.VulnPredicate(signing.VulnScan{ScannerURI: "https://moat.dev", ScannerVersion: version,
		DBURI: "osv:" + dir, DBVersion: strings.Join(parts, ","), Result: m, Started: started, Finished: time.Now()})
}

func newVerifyAttestationCmd() *cobra.Command {
	var rf registryFlags
	var keys, typ, format string
	cmd := &cobra.Command{
		Use:   "verify-attestation IMAGE --key PUB [--type sbom|vuln|provenance|URI]",
		Short: "Verify an image's in-toto attestations offline",
		Long: `Verify-attestation fetches the attestations of IMAGE (cosign .att tag and
OCI 1.1 referrers) and checks each offline: the DSSE signature verifies with
a trusted key, the statement's subject holds the image's digest, and its
predicate type is the one asked for with --type.

Exit codes: 0 verified, 1 no valid attestation, 2 error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			ptype := ""
			if typ != "" {
				var err error
				if ptype, err = signing.PredicateTypeFor(typ); err != nil {
					return err
				}
			}
			trusted, err := signing.LoadPublicKeys(keys)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			res, err := rf.remote().VerifyAttestations(ctx, args[0], trusted, ptype)
			if err != nil && !signing.IsVerificationError(err) {
				return err
			}
			if format == "json" {
				if werr := writeJSON(cmd.OutOrStdout(), res); werr != nil {
					return werr
				}
			} else {
				writeAttestationTable(cmd.OutOrStdout(), res)
			}
			if err != nil {
				return &gateError{msg: err.Error()}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&keys, "key", "", "trusted public key: file, directory or comma-separated list (required)")
	fl.StringVar(&typ, "type", "", "predicate type: sbom, vuln, provenance or a URI (default: any)")
	fl.StringVarP(&format, "format", "f", "table", "output format: table or json")
	rf.add(cmd)
	cmd.MarkFlagRequired("key")
	return cmd
}

func writeAttestationTable(w io.Writer, res *signing.AttestationsResult) {
	status := "VERIFIED"
	if !res.Verified {
		status = "FAILED"
	}
	fmt.Fprintf(w, "%s@%s: %s\n", res.Image, res.Digest, status)
	if len(res.Attestations) == 0 {
		fmt.Fprintln(w, "  no attestations found (looked in the .att tag and the referrers API)")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  RESULT\tPREDICATE TYPE\tKEY\tFOUND IN")
	for _, a := range res.Attestations {
		r := "ok"
		if !a.Verified {
			r = a.Error
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r, orDash(a.PredicateType), orDash(a.Key), strings.Join(a.Sources, ", "))
	}
	tw.Flush()
}
