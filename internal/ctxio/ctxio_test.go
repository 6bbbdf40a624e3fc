package ctxio

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestCopy(t *testing.T) {
	var buf bytes.Buffer
	n, err := Copy(context.Background(), &buf, strings.NewReader("bale"))
	if err != nil || n != 4 || buf.String() != "bale" {
		t.Fatalf("Copy = %d, %v, %q", n, err, buf.String())
	}
}

// endless never ends; only the context can stop a copy from it.
type endless struct{ reads int }

func (e *endless) Read(p []byte) (int, error) {
	e.reads++
	return len(p), nil
}

func TestCancelStopsCopy(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	src := &endless{}
	w := writerFunc(func(p []byte) (int, error) {
		if src.reads == 3 {
			cancel()
		}
		return len(p), nil
	})
	n, err := Copy(ctx, w, src)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if src.reads != 3 || n != 3*bufSize {
		t.Errorf("copied %d bytes in %d reads after cancel at read 3", n, src.reads)
	}
	if _, err := Reader(ctx, strings.NewReader("x")).Read(make([]byte, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Reader after cancel: %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

var _ io.Writer = writerFunc(nil)
