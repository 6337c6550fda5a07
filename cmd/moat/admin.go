package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moat-dev/moat/internal/registry"
	"github.com/moat-dev/moat/internal/store"
)

// adminFlags are shared by the commands that call the registry admin API.
type adminFlags struct {
	server, user, password, caCert, format string
}

func (a *adminFlags) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&a.server, "server", envOr("MOAT_SERVER", "http://127.0.0.1:5000"), "registry URL [MOAT_SERVER]")
	f.StringVar(&a.user, "username", envOr("MOAT_USERNAME", "admin"), "account name [MOAT_USERNAME]")
	f.StringVar(&a.password, "password", "", "password [MOAT_PASSWORD, or MOAT_ADMIN_PASSWORD]")
	f.StringVar(&a.caCert, "ca-cert", "", "extra trusted CA certificate (e.g. the --dev certificate)")
	f.StringVar(&a.format, "format", "table", "output format: table or json")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (a *adminFlags) client() (*registry.AdminClient, error) {
	if a.format != "table" && a.format != "json" {
		return nil, fmt.Errorf("--format %q: want table or json", a.format)
	}
	pw := a.password
	if pw == "" {
		pw = os.Getenv("MOAT_PASSWORD")
	}
	if pw == "" {
		pw = os.Getenv("MOAT_ADMIN_PASSWORD")
	}
	if pw == "" {
		return nil, fmt.Errorf("no password: use --password or MOAT_PASSWORD")
	}
	return registry.NewAdminClient(a.server, a.user, pw, a.caCert)
}

// output prints v as JSON or as a table of rows.
func (a *adminFlags) output(w io.Writer, v any, header []string, rows [][]string) error {
	if a.format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func newUserCmd() *cobra.Command {
	var a adminFlags
	cmd := &cobra.Command{Use: "user", Short: "Manage registry users (add, list, disable, enable)"}
	a.register(cmd)
	var admin bool
	var password string
	add := &cobra.Command{
		Use: "add NAME", Short: "Add a user (prints a generated password once unless --new-password is given)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var out registry.UserCreated
			if err := c.Do("POST", "users", registry.UserRequest{Name: args[0], Password: password, Admin: admin}, &out); err != nil {
				return err
			}
			row := []string{out.Name, yesNo(out.Admin), out.Password}
			return a.output(cmd.OutOrStdout(), out, []string{"NAME", "ADMIN", "PASSWORD (shown once)"}, [][]string{row})
		},
	}
	add.Flags().BoolVar(&admin, "admin", false, "make the user a system administrator")
	add.Flags().StringVar(&password, "new-password", "", "the user's password (default: generated)")
	list := &cobra.Command{
		Use: "list", Short: "List users", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var us []store.User
			if err := c.Do("GET", "users", nil, &us); err != nil {
				return err
			}
			var rows [][]string
			for _, u := range us {
				rows = append(rows, []string{u.Name, yesNo(u.Admin), yesNo(u.Disabled), u.CreatedAt.Format(time.RFC3339)})
			}
			return a.output(cmd.OutOrStdout(), us, []string{"NAME", "ADMIN", "DISABLED", "CREATED"}, rows)
		},
	}
	toggle := func(verb string) *cobra.Command {
		return &cobra.Command{
			Use: verb + " NAME", Short: strings.ToUpper(verb[:1]) + verb[1:] + " a user (disabling revokes their tokens at once)", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.client()
				if err != nil {
					return err
				}
				if err := c.Do("POST", "users/"+url.PathEscape(args[0])+"/"+verb, nil, nil); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user %s %sd\n", args[0], verb)
				return nil
			},
		}
	}
	cmd.AddCommand(add, list, toggle("disable"), toggle("enable"))
	return cmd
}

func newProjectCmd() *cobra.Command {
	var a adminFlags
	cmd := &cobra.Command{Use: "project", Short: "Manage registry projects (create, list, set)"}
	a.register(cmd)
	var public, immutable, requireSig bool
	var quota int64
	row := func(p store.Project) []string {
		q := "-"
		if p.QuotaBytes > 0 {
			q = fmt.Sprint(p.QuotaBytes)
		}
		return []string{p.Name, yesNo(p.Public), yesNo(p.ImmutableTags), q, yesNo(p.RequireSignature)}
	}
	header := []string{"NAME", "PUBLIC", "IMMUTABLE TAGS", "QUOTA BYTES", "REQUIRE SIGNATURE"}
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a project", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var p store.Project
			if err := c.Do("POST", "projects", registry.ProjectRequest{Name: args[0], Public: &public, ImmutableTags: &immutable, QuotaBytes: &quota}, &p); err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), p, header, [][]string{row(p)})
		},
	}
	set := &cobra.Command{
		Use: "set NAME", Short: "Change a project's settings (owner or admin)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req := registry.ProjectRequest{Name: args[0]}
			if cmd.Flags().Changed("public") {
				req.Public = &public
			}
			if cmd.Flags().Changed("immutable-tags") {
				req.ImmutableTags = &immutable
			}
			if cmd.Flags().Changed("quota") {
				req.QuotaBytes = &quota
			}
			if cmd.Flags().Changed("require-signature") {
				req.RequireSignature = &requireSig
			}
			var p store.Project
			if err := c.Do("PATCH", "projects/"+url.PathEscape(args[0]), req, &p); err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), p, header, [][]string{row(p)})
		},
	}
	for _, c := range []*cobra.Command{create, set} {
		c.Flags().BoolVar(&public, "public", false, "anyone logged in (and anonymous clients with --allow-anonymous) may pull")
		c.Flags().BoolVar(&immutable, "immutable-tags", false, "a pushed tag cannot be moved or deleted")
		c.Flags().Int64Var(&quota, "quota", 0, "storage quota in bytes (0: unlimited)")
	}
	set.Flags().BoolVar(&requireSig, "require-signature", false, "refuse pulls of images not signed by one of the project's trusted keys (moat project trust); --require-signature=false turns it off")
	list := &cobra.Command{
		Use: "list", Short: "List projects you can see", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var ps []store.Project
			if err := c.Do("GET", "projects", nil, &ps); err != nil {
				return err
			}
			var rows [][]string
			for _, p := range ps {
				rows = append(rows, row(p))
			}
			return a.output(cmd.OutOrStdout(), ps, header, rows)
		},
	}
	cmd.AddCommand(create, list, set, newTrustCmd(&a), newRegistryKeyCmd(&a))
	return cmd
}

func newMemberCmd() *cobra.Command {
	var a adminFlags
	cmd := &cobra.Command{Use: "member", Short: "Manage project members (add, remove, list)"}
	a.register(cmd)
	add := &cobra.Command{
		Use: "add PROJECT USER ROLE", Short: "Add a member or change their role (reader, writer, owner)", Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var m store.Member
			if err := c.Do("PUT", "projects/"+url.PathEscape(args[0])+"/members/"+url.PathEscape(args[1]), registry.MemberRequest{Role: args[2]}, &m); err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), m, []string{"PROJECT", "USER", "ROLE"}, [][]string{{m.Project, m.User, m.Role}})
		},
	}
	remove := &cobra.Command{
		Use: "remove PROJECT USER", Short: "Remove a member", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Do("DELETE", "projects/"+url.PathEscape(args[0])+"/members/"+url.PathEscape(args[1]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s from %s\n", args[1], args[0])
			return nil
		},
	}
	list := &cobra.Command{
		Use: "list PROJECT", Short: "List a project's members", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var ms []store.Member
			if err := c.Do("GET", "projects/"+url.PathEscape(args[0])+"/members", nil, &ms); err != nil {
				return err
			}
			var rows [][]string
			for _, m := range ms {
				rows = append(rows, []string{m.Project, m.User, m.Role})
			}
			return a.output(cmd.OutOrStdout(), ms, []string{"PROJECT", "USER", "ROLE"}, rows)
		},
	}
	cmd.AddCommand(add, remove, list)
	return cmd
}

func newRobotCmd() *cobra.Command {
	var a adminFlags
	cmd := &cobra.Command{Use: "robot", Short: "Manage robot accounts (service principals): create, list, revoke"}
	a.register(cmd)
	var perms []string
	var expires time.Duration
	var desc string
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a robot; its secret is printed once", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req := registry.RobotRequest{Name: args[0], Description: desc, Permissions: map[string]string{}}
			for _, p := range perms {
				proj, role, ok := strings.Cut(p, "=")
				if !ok {
					return fmt.Errorf("--perm %q: want PROJECT=ROLE", p)
				}
				req.Permissions[proj] = role
			}
			if expires > 0 {
				req.ExpiresAt = time.Now().Add(expires).UTC()
			}
			var out registry.RobotCreated
			if err := c.Do("POST", "robots", req, &out); err != nil {
				return err
			}
			return a.output(cmd.OutOrStdout(), out, []string{"NAME", "EXPIRES", "PERMISSIONS", "SECRET (shown once)"},
				[][]string{{out.Name, expiry(out.ExpiresAt), permString(out.Permissions), out.Secret}})
		},
	}
	create.Flags().StringArrayVar(&perms, "perm", nil, "PROJECT=ROLE (repeatable; role reader, writer or owner)")
	create.Flags().DurationVar(&expires, "expires-in", 0, "lifetime, e.g. 720h (default: no expiry)")
	create.Flags().StringVar(&desc, "description", "", "what the robot is for")
	list := &cobra.Command{
		Use: "list", Short: "List robots", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var rs []store.Robot
			if err := c.Do("GET", "robots", nil, &rs); err != nil {
				return err
			}
			var rows [][]string
			for _, r := range rs {
				rows = append(rows, []string{r.Name, expiry(r.ExpiresAt), yesNo(r.Disabled), permString(r.Permissions)})
			}
			return a.output(cmd.OutOrStdout(), rs, []string{"NAME", "EXPIRES", "REVOKED", "PERMISSIONS"}, rows)
		},
	}
	revoke := &cobra.Command{
		Use: "revoke NAME", Short: "Revoke a robot (its tokens stop working at once)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Do("DELETE", "robots/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "robot %s revoked\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func expiry(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format(time.RFC3339)
}

func permString(m map[string]string) string {
	var parts []string
	for p, r := range m {
		parts = append(parts, p+"="+r)
	}
	return strings.Join(parts, ",")
}
