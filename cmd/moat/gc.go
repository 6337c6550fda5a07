package main

import (
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/registry"
)

func newGCCmd() *cobra.Command {
	var a adminFlags
	var dry bool
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Remove blobs no manifest references (asks the running registry; safe while it serves)",
		Long: `gc asks the running registry to delete blobs that no manifest references
and that are older than --grace (so layers of pushes in progress survive),
stored content without a database record, and stale upload sessions.
--dry-run lists what would be removed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{"grace": {grace.String()}}
			if dry {
				q.Set("dry_run", "true")
			}
			var rep registry.GCReport
			if err := c.Do("POST", "gc?"+q.Encode(), nil, &rep); err != nil {
				return err
			}
			verb := "removed"
			if dry {
				verb = "would remove"
			}
			var rows [][]string
			for _, b := range rep.Blobs {
				rows = append(rows, []string{b, "unreferenced"})
			}
			for _, b := range rep.Orphans {
				rows = append(rows, []string{b, "no record"})
			}
			if err := a.output(cmd.OutOrStdout(), rep, []string{"BLOB", "REASON"}, rows); err != nil {
				return err
			}
			if a.format == "table" {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %d blobs (%d bytes), %d stored without record, %d stale uploads\n",
					verb, len(rep.Blobs), rep.Bytes, len(rep.Orphans), rep.Uploads)
			}
			return nil
		},
	}
	a.register(cmd)
	cmd.Flags().BoolVar(&dry, "dry-run", false, "list what would be removed without removing it")
	cmd.Flags().DurationVar(&grace, "grace", time.Hour, "keep unreferenced blobs younger than this")
	return cmd
}
