package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/registry"
	"github.com/moat-dev/moat/internal/signing"
	"github.com/moat-dev/moat/internal/signing/registrygate"
)

// newTrustCmd is `moat project trust`: a project's trusted public keys,
// held by the server (sealed under its master key).
func newTrustCmd(a *adminFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "Manage a project's trusted signing keys (add, list, remove)",
		Long: `A project with require-signature on (moat project set P --require-signature)
serves an image only when one of its signatures verifies with one of the
project's trusted keys. Owners and administrators add and remove keys;
members list them. The server stores them encrypted under its master key.`,
	}
	var project, keyFile, name string
	header := []string{"PROJECT", "NAME", "ALGORITHM", "FINGERPRINT", "ADDED BY", "ADDED"}
	row := func(k registry.TrustedKey) []string {
		return []string{k.Project, k.Name, k.Algorithm, k.Fingerprint, k.AddedBy, k.CreatedAt.Format(time.RFC3339)}
	}
	needProject := func() error {
		if project == "" {
			return errors.New("--project is required")
		}
		return nil
	}
	add := &cobra.Command{
		Use: "add --project P --key FILE [--name N]", Short: "Trust a public key (PEM, cosign .pub) for a project's signatures", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needProject(); err != nil {
				return err
			}
			if keyFile == "" {
				return errors.New("--key FILE is required (a public key: cosign.pub, moat key generate's .pub, or a PEM)")
			}
			data, err := os.ReadFile(keyFile)
			if err != nil {
				return err
			}
			// Check it here for a clear message naming the file.
			if _, err := signing.ParsePublicKey(data); err != nil {
				return fmt.Errorf("%s: %w", keyFile, err)
			}
			n := name
			if n == "" {
				n = registrygate.KeyNameFromFile(keyFile)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var k registry.TrustedKey
			if err := c.Do("POST", "projects/"+url.PathEscape(project)+"/trusted-keys", registry.TrustedKeyRequest{Name: n, PublicKey: string(data)}, &k); err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), k, header, [][]string{row(k)})
		},
	}
	add.Flags().StringVar(&keyFile, "key", "", "public key file (PEM)")
	add.Flags().StringVar(&name, "name", "", "name of the key in the project (default: the file's base name)")
	list := &cobra.Command{
		Use: "list --project P", Short: "List a project's trusted keys", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needProject(); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var ks []registry.TrustedKey
			if err := c.Do("GET", "projects/"+url.PathEscape(project)+"/trusted-keys", nil, &ks); err != nil {
				return err
			}
			var rows [][]string
			for _, k := range ks {
				rows = append(rows, row(k))
			}
			return a.output(cmd.OutOrStdout(), ks, header, rows)
		},
	}
	remove := &cobra.Command{
		Use: "remove --project P --name N", Short: "Stop trusting a key", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needProject(); err != nil {
				return err
			}
			if name == "" {
				return errors.New("--name is required (see moat project trust list)")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Do("DELETE", "projects/"+url.PathEscape(project)+"/trusted-keys/"+url.PathEscape(name), nil, nil); err != nil {
				return err
			}
			if a.format == "json" {
				return a.output(cmd.OutOrStdout(), map[string]string{"project": project, "removed": name}, nil, nil)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "project %s no longer trusts key %s\n", project, name)
			return nil
		},
	}
	remove.Flags().StringVar(&name, "name", "", "name of the key to remove")
	for _, c := range []*cobra.Command{add, list, remove} {
		c.Flags().StringVar(&project, "project", "", "the project")
	}
	cmd.AddCommand(add, list, remove)
	return cmd
}

// newRegistryKeyCmd is `moat project registry-key`: the public key that
// verifies the registry's scan-on-push attestations.
func newRegistryKeyCmd(a *adminFlags) *cobra.Command {
	var outFile string
	cmd := &cobra.Command{
		Use:   "registry-key [-o registry.pub]",
		Short: "Print (or save) the registry's public signing key, which verifies its scan-on-push attestations",
		Long: `The registry signs the SBOM and vulnerability attestations of every scanned
image with its own key. Verify them with:
  moat project registry-key -o registry.pub
  moat verify-attestation IMAGE --key registry.pub --type vuln
  cosign verify-attestation --key registry.pub --type cyclonedx IMAGE`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The public key needs no credentials.
			if a.format != "table" && a.format != "json" {
				return fmt.Errorf("--format %q: want table or json", a.format)
			}
			c, err := registry.NewAdminClient(a.server, "", "", a.caCert)
			if err != nil {
				return err
			}
			var k registry.RegistryKey
			if err := c.Do("GET", "signing/registry-key", nil, &k); err != nil {
				return err
			}
			if outFile != "" {
				if err := os.WriteFile(outFile, []byte(k.PublicKey), 0o644); err != nil {
					return err
				}
			}
			switch {
			case a.format == "json":
				return a.output(cmd.OutOrStdout(), k, nil, nil)
			case outFile != "":
				return a.output(cmd.OutOrStdout(), k, []string{"FINGERPRINT", "ALGORITHM", "CREATED", "SAVED TO"},
					[][]string{{k.Fingerprint, k.Algorithm, k.CreatedAt.Format(time.RFC3339), outFile}})
			default:
				_, err := fmt.Fprint(cmd.OutOrStdout(), k.PublicKey)
				return err
			}
		},
	}
	cmd.Flags().StringVarP(&outFile, "output", "o", "", "write the PEM to this file")
	return cmd
}
