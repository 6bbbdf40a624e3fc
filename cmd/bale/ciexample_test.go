package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// workflow is the part of a GitHub/Gitea Actions workflow the test reads.
type workflow struct {
	Jobs map[string]struct {
		Steps []struct {
			Name string `json:"name"`
			Run  string `json:"run"`
		} `json:"steps"`
	} `json:"jobs"`
}

// baleCommands returns every bale invocation in a step's shell script,
// split into words, ending at a redirection, pipe, && or closing paren.
func baleCommands(script string) [][]string {
	var cmds [][]string
	for line := range strings.SplitSeq(script, "\n") {
		words := strings.Fields(strings.NewReplacer("(", " ( ", ")", " ) ", "&&", " && ").Replace(line))
		for i, w := range words {
			if w != "bale" || (i > 0 && !slices.Contains([]string{"(", "&&", "|", ";"}, words[i-1])) {
				continue
			}
			var args []string
			for _, a := range words[i+1:] {
				if strings.HasPrefix(a, ">") || slices.Contains([]string{"|", "&&", ")", ";"}, a) {
					break
				}
				args = append(args, strings.Trim(a, `"`))
			}
			cmds = append(cmds, args)
		}
	}
	return cmds
}

// TestCIExample: the example workflow parses as YAML, runs bale vet,
// plan, diff (Markdown), build and verify, and every bale command in it
// exists in the command tree with those flags and a valid argument count.
func TestCIExample(t *testing.T) {
	t.Parallel()
	path := filepath.Join(repoDir(), "examples", "ci", "release.yml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var wf workflow
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	seen := map[string]bool{}
	for job, j := range wf.Jobs {
		for _, s := range j.Steps {
			for _, args := range baleCommands(s.Run) {
				root := newRoot(io.Discard, io.Discard)
				cmd, rest, err := root.Find(args)
				if err != nil || cmd == root {
					t.Errorf("job %s step %q: bale %s: no such command (%v)", job, s.Name, strings.Join(args, " "), err)
					continue
				}
				if err := cmd.ParseFlags(rest); err != nil {
					t.Errorf("job %s step %q: bale %s: %v", job, s.Name, strings.Join(args, " "), err)
					continue
				}
				if cmd.Args != nil {
					if err := cmd.Args(cmd, cmd.Flags().Args()); err != nil {
						t.Errorf("job %s step %q: bale %s: %v", job, s.Name, strings.Join(args, " "), err)
					}
				}
				seen[cmd.Name()] = true
				if cmd.Name() == "diff" && !strings.Contains(strings.Join(args, " "), "--format markdown") {
					t.Errorf("job %s: bale diff does not write Markdown for the PR", job)
				}
			}
		}
	}
	for _, want := range []string{"vet", "plan", "diff", "build", "verify"} {
		if !seen[want] {
			t.Errorf("the example workflow never runs bale %s", want)
		}
	}
}

// TestCIExampleParser: the test's command finder sees what it must, and an
// unknown flag or command fails the check (so the test can fail).
func TestCIExampleParser(t *testing.T) {
	t.Parallel()
	got := baleCommands("bale vet specs/... --format json > vet.json\n(cd ../main && bale plan specs/aoc -o x.json)\necho bale not-this")
	if len(got) != 2 || got[0][0] != "vet" || got[1][len(got[1])-1] != "x.json" {
		t.Fatalf("baleCommands: %q", got)
	}
	root := newRoot(io.Discard, io.Discard)
	cmd, rest, _ := root.Find([]string{"build", "specs/aoc", "--no-such-flag"})
	if err := cmd.ParseFlags(rest); err == nil {
		t.Error("an unknown flag parses")
	}
	if cmd, _, err := root.Find([]string{"frobnicate"}); err == nil && cmd != root {
		t.Error("an unknown command is found")
	}
}
