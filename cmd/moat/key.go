package main

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/moat-dev/moat/internal/signing"
)

func newKeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Create and import signing keys (cosign-compatible)",
	}
	cmd.AddCommand(newKeyGenerateCmd(), newKeyImportCmd())
	return cmd
}

const passphraseHelp = `The passphrase comes from MOAT_KEY_PASSWORD (or COSIGN_PASSWORD), else
from a prompt when standard input is a terminal.`

func newKeyGenerateCmd() *cobra.Command {
	var alg, prefix string
	var force bool
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate a key pair: PREFIX.key (encrypted) and PREFIX.pub",
		Long: `Generate writes a new signing key pair: the private key encrypted with a
passphrase in cosign's "ENCRYPTED SIGSTORE PRIVATE KEY" format (cosign reads
it), and the public key as a PEM "PUBLIC KEY".

` + passphraseHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := signing.GenerateKey(alg)
			if err != nil {
				return err
			}
			return writeKeyPair(cmd, key, prefix, force)
		},
	}
	cmd.Flags().StringVar(&alg, "alg", signing.AlgECDSAP256, "key algorithm: ecdsa-p256 or ed25519")
	cmd.Flags().StringVar(&prefix, "output-key-prefix", "cosign", "write PREFIX.key and PREFIX.pub")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}

func newKeyImportCmd() *cobra.Command {
	var prefix string
	var force bool
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import a cosign key or a PEM private key (PKCS#8, EC, PKCS#1 RSA)",
		Long: `Import reads a private key — a cosign/sigstore encrypted key, or an
unencrypted PEM key (PKCS#8 "PRIVATE KEY" holding ECDSA, Ed25519 or RSA;
"EC PRIVATE KEY"; "RSA PRIVATE KEY") — and writes it as PREFIX.key
(encrypted, cosign format) and PREFIX.pub. A cosign key is decrypted and
re-encrypted with the same passphrase.

` + passphraseHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var pass []byte
			if signing.IsEncryptedPEM(data) {
				if pass, err = readPassphrase(cmd, false); err != nil {
					return err
				}
			}
			key, err := signing.ParsePrivateKey(data, pass)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			return writeKeyPairPass(cmd, key, prefix, force, pass)
		},
	}
	cmd.Flags().StringVar(&prefix, "output-key-prefix", "import-cosign", "write PREFIX.key and PREFIX.pub")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}

func writeKeyPair(cmd *cobra.Command, key crypto.Signer, prefix string, force bool) error {
	return writeKeyPairPass(cmd, key, prefix, force, nil)
}

func writeKeyPairPass(cmd *cobra.Command, key crypto.Signer, prefix string, force bool, pass []byte) error {
	priv, pub := prefix+".key", prefix+".pub"
	if !force {
		for _, p := range []string{priv, pub} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s exists; use --force to overwrite it", p)
			}
		}
	}
	if pass == nil {
		var err error
		if pass, err = readPassphrase(cmd, true); err != nil {
			return err
		}
	}
	enc, err := signing.EncryptPrivateKey(key, pass)
	if err != nil {
		return err
	}
	pubPEM, err := signing.MarshalPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := os.WriteFile(priv, enc, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(pub, pubPEM, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Private key written to %s\nPublic key written to %s\nKey fingerprint: %s\n",
		priv, pub, signing.Fingerprint(key.Public()))
	return nil
}

// readPassphrase takes the key passphrase from MOAT_KEY_PASSWORD or
// COSIGN_PASSWORD (set and possibly empty), else prompts on the terminal
// (twice when confirm). It never echoes or logs the passphrase.
func readPassphrase(cmd *cobra.Command, confirm bool) ([]byte, error) {
	for _, env := range []string{"MOAT_KEY_PASSWORD", "COSIGN_PASSWORD"} {
		if v, ok := os.LookupEnv(env); ok {
			return []byte(v), nil
		}
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, errors.New("no passphrase: set MOAT_KEY_PASSWORD (standard input is not a terminal to prompt on)")
	}
	errw := cmd.ErrOrStderr()
	p1, err := prompt(errw, fd, "Enter passphrase for the private key: ")
	if err != nil {
		return nil, err
	}
	if confirm {
		p2, err := prompt(errw, fd, "Enter passphrase again: ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p1, p2) {
			return nil, errors.New("the passphrases do not match")
		}
	}
	return p1, nil
}

func prompt(w io.Writer, fd int, msg string) ([]byte, error) {
	fmt.Fprint(w, msg)
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(w)
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	return p, nil
}

// loadSigningKey reads and decrypts the private key at path.
func loadSigningKey(cmd *cobra.Command, path string) (crypto.Signer, error) {
	if path == "" {
		return nil, errors.New("--key is required")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pass []byte
	if signing.IsEncryptedPEM(data) {
		if pass, err = readPassphrase(cmd, false); err != nil {
			return nil, err
		}
	}
	k, err := signing.ParsePrivateKey(data, pass)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
