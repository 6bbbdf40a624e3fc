// Command gobin is a tiny Go program the sbom tests build to read back its
// build information; it links two dependencies from bale's go.mod.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
)

func main() {
	g, _ := errgroup.WithContext(context.Background())
	g.Go(func() error {
		enc, err := zstd.NewWriter(os.Stdout)
		if err != nil {
			return err
		}
		return enc.Close()
	})
	fmt.Println(g.Wait())
}
