package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/bale-build/bale/source"
)

// netFlags are the network limits of every command that talks to a
// server: planning and builds (registries, chart repositories, URLs) and
// the far side's push, publish and pull. They mean the same everywhere,
// and source builds the one transport that applies them.
type netFlags struct {
	timeout        time.Duration
	speedLimit     byteSize
	speedTime      time.Duration
	requestTimeout time.Duration
	retries        int
}

func (f *netFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.DurationVar(&f.timeout, "timeout", source.DefaultTimeout, "longest wait for a response's headers, and for each next byte of a request or response body")
	f.speedLimit = source.DefaultSpeedLimit
	fs.Var(&f.speedLimit, "speed-limit", "give up on a body (sent or received) slower than this per second (B, KiB, MiB, kB…) on average over --speed-time; 0 turns the check off")
	fs.DurationVar(&f.speedTime, "speed-time", source.DefaultSpeedTime, "the window --speed-limit is averaged over")
	fs.DurationVar(&f.requestTimeout, "request-timeout", source.DefaultRequestTimeout, "deadline for one request, body included; a retry or redirect is a new request")
	fs.IntVar(&f.retries, "retries", source.DefaultRetries, "retries on 429, 5xx and connection resets, with backoff")
}

// options returns the limits as source.Options, refusing durations that
// are not positive.
func (f *netFlags) options() (source.Options, error) {
	retries := f.retries
	if retries == 0 {
		retries = -1 // source reads 0 as "the default"; --retries 0 means none
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--timeout", f.timeout}, {"--speed-time", f.speedTime}, {"--request-timeout", f.requestTimeout}} {
		if d.v <= 0 {
			return source.Options{}, fmt.Errorf("%s %s: want a positive duration", d.flag, d.v)
		}
	}
	speed := int64(f.speedLimit)
	if speed == 0 {
		speed = -1 // source reads 0 as "the default"; --speed-limit 0 means off
	}
	return source.Options{
		Timeout:        f.timeout,
		SpeedLimit:     speed,
		SpeedTime:      f.speedTime,
		RequestTimeout: f.requestTimeout,
		Retries:        retries,
	}, nil
}

// transport returns source's transport over base with these limits; the
// hosts in insecure may be reached over plain HTTP (loopback always may).
func (f *netFlags) transport(base http.RoundTripper, insecure ...string) (http.RoundTripper, error) {
	o, err := f.options()
	if err != nil {
		return nil, err
	}
	o.Transport, o.Insecure = base, insecure
	return source.NewTransport(o)
}
