// Command composecheck loads a Compose file the way Docker Compose v2 does
// (compose-go's project loader: env-file interpolation, schema validation,
// normalization, consistency checks such as depends_on naming a defined
// service), without a Docker engine:
//
//	composecheck [--env-file FILE]... [--os-env] COMPOSE_FILE...
//
// On success it prints the normalized project as JSON on stdout (what
// `docker compose config --format json` prints) and exits 0; otherwise it
// prints the errors on stderr and exits 1 (2 on usage errors).
//
// Unlike `docker compose`, the process environment is not used for
// interpolation unless --os-env is given, so that the result depends only on
// the files (reproducible in CI). Without --env-file, a `.env` beside the
// first compose file is read, as Compose does. Every profile is enabled, so
// services behind a profile are checked too.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

const usage = "usage: composecheck [--env-file FILE]... [--os-env] COMPOSE_FILE..."

type options struct {
	files    []string
	envFiles []string
	osEnv    bool
}

func main() {
	opts, err := parseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "composecheck: %v\n%s\n", err, usage)
		os.Exit(2)
	}
	project, err := Load(context.Background(), opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "composecheck: %s: %v\n", strings.Join(opts.files, ", "), err)
		os.Exit(1)
	}
	if err := writeJSON(os.Stdout, project); err != nil {
		fmt.Fprintf(os.Stderr, "composecheck: %v\n", err)
		os.Exit(1)
	}
}

func parseArgs(args []string) (options, error) {
	var o options
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-h" || a == "--help":
			return o, fmt.Errorf("help requested")
		case a == "--env-file":
			if i+1 >= len(args) {
				return o, fmt.Errorf("--env-file needs a value")
			}
			i++
			o.envFiles = append(o.envFiles, args[i])
		case strings.HasPrefix(a, "--env-file="):
			o.envFiles = append(o.envFiles, strings.TrimPrefix(a, "--env-file="))
		case a == "--os-env":
			o.osEnv = true
		case strings.HasPrefix(a, "-"):
			return o, fmt.Errorf("unknown flag %s", a)
		default:
			o.files = append(o.files, a)
		}
	}
	if len(o.files) == 0 {
		return o, fmt.Errorf("no compose file given")
	}
	return o, nil
}

// Load loads and validates the project with the options of `docker compose`
// (cmd/compose's ToProject), less the process environment unless asked for.
func Load(ctx context.Context, o options) (*types.Project, error) {
	fns := []cli.ProjectOptionsFn{}
	if o.osEnv {
		fns = append(fns, cli.WithOsEnv)
	}
	fns = append(fns,
		cli.WithEnvFiles(o.envFiles...),
		cli.WithDotEnv,
		cli.WithProfiles([]string{"*"}),
		cli.WithResolvedPaths(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithInterpolation(true),
	)
	po, err := cli.NewProjectOptions(o.files, fns...)
	if err != nil {
		return nil, err
	}
	project, err := po.LoadProject(ctx)
	if err != nil {
		return nil, err
	}
	if project.Name == "" {
		return nil, fmt.Errorf("the project has no name (set a top-level `name:`)")
	}
	return project, nil
}

func writeJSON(w io.Writer, project *types.Project) error {
	out, err := project.MarshalJSON()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", out)
	return err
}
