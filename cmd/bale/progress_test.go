package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/bale-build/bale/executor"
	"github.com/bale-build/bale/plan"
)

// TestBuildProgress: on a terminal the line names the image being fetched
// with its bytes done and total, the rate and the time left, and the pack
// step says it is packing; in a log each finished step is one line naming
// what it built (the image, not a blob digest).
func TestBuildProgress(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	p := &plan.Plan{
		Inputs: []plan.Input{{Kind: plan.KindImage, Name: "web", Image: &plan.Image{Manifests: []plan.Manifest{{
			Digest: "sha256:m", Size: mib, Config: plan.Blob{Digest: "sha256:c", Size: mib}, Layers: []plan.Blob{{Digest: "sha256:l", Size: 2 * mib}},
		}}}}},
		Steps: []plan.Step{
			{ID: "s1", Action: plan.ActionImage, Params: map[string]string{plan.ParamName: "web"}, Outputs: []string{"p.tar:images/blobs/sha256/x"}},
			{ID: "s2", Action: plan.ActionPack, Params: map[string]string{plan.ParamName: "p"}, Outputs: []string{"p.tar"}},
		},
	}
	var tty bytes.Buffer
	pr := newProgress(&tty, p)
	pr.tty = true
	// The rates are of the test's clock: 1 MiB in 2 s, then 2 MiB packed
	// in 1 s.
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	pr.now = func() time.Time { return now }
	pr.start, now = now, now.Add(2*time.Second)
	pr.event(executor.Event{Kind: executor.EventFetched, Action: plan.ActionImage, Subject: "web", Bytes: mib})
	pr.event(executor.Event{Kind: executor.EventStart, StepID: "s2", Action: plan.ActionPack})
	pr.event(executor.Event{Kind: executor.EventPacked, StepID: "s2", Action: plan.ActionPack, Subject: "p.tar", Bytes: 0, Total: 8 * mib})
	now = now.Add(time.Second)
	pr.event(executor.Event{Kind: executor.EventPacked, StepID: "s2", Action: plan.ActionPack, Subject: "p.tar", Bytes: 2 * mib, Total: 8 * mib})
	out := tty.String()
	for _, want := range []string{"[0/2] fetching web 1.0 MiB / 4.0 MiB  512.0 KiB/s  ETA 6s", "[0/2] packing p", "[0/2] packing p.tar 2.0 MiB / 8.0 MiB  2.0 MiB/s  ETA 3s"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal progress lacks %q:\n%q", want, out)
		}
	}
	// Within 100 ms of a redraw the line is not drawn again.
	if strings.Contains(out, "packing p.tar 0 B") {
		t.Errorf("terminal progress redrawn within 100 ms:\n%q", out)
	}

	var log bytes.Buffer
	ev := buildProgress(&log, p)
	ev(executor.Event{Kind: executor.EventFetched, Action: plan.ActionImage, Subject: "web", Bytes: mib})
	ev(executor.Event{Kind: executor.EventDone, StepID: "s1", Action: plan.ActionImage, Subject: "p.tar:images/blobs/sha256/x", Bytes: 4 * mib})
	ev(executor.Event{Kind: executor.EventDone, StepID: "s2", Action: plan.ActionPack, Subject: "p.tar", Bytes: 3 * mib})
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "  web") || !strings.HasPrefix(lines[0], "[1/2] built  image") || !strings.HasPrefix(lines[1], "[2/2] built  pack") {
		t.Errorf("log progress:\n%s", log.String())
	}
	if strings.Contains(log.String(), "\r") || strings.Contains(log.String(), "fetching") {
		t.Errorf("log progress rewrites lines:\n%q", log.String())
	}
}
