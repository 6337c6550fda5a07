// Command moat secures the life of a container image: scan, store, sign,
// admit and watch. This file wires the subcommands; each lives in its own
// file of this package and holds flags and wiring only: the work is done
// by the packages under internal/.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	// The first garbage collection waits for a 16 MB heap: short commands
	// (verify, sign, check) then finish without one.
	_ "github.com/moat-dev/moat/internal/startheap"
)

// Exit codes shared by every command (documented in README.md).
const (
	exitOK    = 0
	exitFound = 1 // a gate tripped: findings at or above --fail-on, policy denied, ...
	exitError = 2 // the command could not do its job (bad input, unreachable source, ...)
)

// gateError is returned by a command whose job succeeded but whose gate
// tripped; main turns it into exit code 1 instead of 2.
type gateError struct{ msg string }

func (e *gateError) Error() string { return e.msg }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "moat",
		Short:         "moat secures container images from build to runtime",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newScanCmd(),
		newCheckCmd(), newAdmitCmd(), newAuthzCmd(),
		newDBCmd(),
		newServeCmd(), newUserCmd(), withGuardProjectFlags(newProjectCmd()), newMemberCmd(), newRobotCmd(), newGCCmd(), newImagesCmd(), newFindingsCmd(), newEventsCmd(), newReportCmd(),
		newAgentCmd(), newRunningCmd(), newExposureCmd(),
		newKeyCmd(), newSignCmd(), newVerifyCmd(), newAttestCmd(), newVerifyAttestationCmd(),
	)
	return root
}

func main() {
	err := newRootCmd().Execute()
	if err == nil {
		os.Exit(exitOK)
	}
	var g *gateError
	if errors.As(err, &g) {
		fmt.Fprintln(os.Stderr, "moat:", err)
		os.Exit(exitFound)
	}
	fmt.Fprintln(os.Stderr, "moat:", err)
	os.Exit(exitError)
}
