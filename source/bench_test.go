package source

import (
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/bale-build/bale/planner/spec"
)

// BenchmarkResolveImages200 resolves 200 images by tag against a local
// registry, 8 at a time, with a fresh Resolver per iteration as one plan
// run would have: each op is 200 resolutions, pings and configs included.
func BenchmarkResolveImages200(b *testing.B) {
	host := startRegistry(b, nil)
	const images, workers = 200, 8
	refs := make([]string, images)
	for i := range refs {
		img, err := random.Image(1024, 2)
		if err != nil {
			b.Fatal(err)
		}
		refs[i] = fmt.Sprintf("%s/bench/app%03d:1.0", host, i)
		push(b, refs[i], img)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := newResolver(b, Options{})
		work := make(chan string)
		var wg sync.WaitGroup
		errs := make(chan error, images)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ref := range work {
					if _, err := r.Image(bg, "/", spec.Image{Name: "app", Ref: ref}); err != nil {
						errs <- err
					}
				}
			}()
		}
		for _, ref := range refs {
			work <- ref
		}
		close(work)
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
}
