// Package kconn copies how a kgo client connects (its seed brokers,
// dialer, TLS, SASL, client id and logger) into options for another
// client: the side clients floodgate builds next to a caller's (a
// control-topic reader, a deferred-lane follower) reach the same cluster
// the same way.
package kconn

import (
	"context"
	"crypto/tls"
	"net"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
)

// Seeds returns cl's seed brokers.
func Seeds(cl *kgo.Client) []string {
	seeds, _ := cl.OptValue(kgo.SeedBrokers).([]string)
	return seeds
}

// Opts returns the options that connect a new client as cl connects,
// seed brokers excluded (see [Seeds]): its dialer, TLS config (cloned),
// SASL mechanisms, client id and logger, those it has.
func Opts(cl *kgo.Client) []kgo.Opt {
	var opts []kgo.Opt
	// kgo refuses a Dialer beside DialTLSConfig, and with a TLS config
	// it reports the dialer it built from it: copy one or the other.
	if tc, _ := cl.OptValue(kgo.DialTLSConfig).(*tls.Config); tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc.Clone()))
	} else if d, _ := cl.OptValue(kgo.Dialer).(func(context.Context, string, string) (net.Conn, error)); d != nil {
		opts = append(opts, kgo.Dialer(d))
	}
	if ms, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism); len(ms) > 0 {
		opts = append(opts, kgo.SASL(ms...))
	}
	if id, _ := cl.OptValue(kgo.ClientID).(string); id != "" {
		opts = append(opts, kgo.ClientID(id))
	}
	if l, _ := cl.OptValue(kgo.WithLogger).(kgo.Logger); l != nil {
		opts = append(opts, kgo.WithLogger(l))
	}
	return opts
}
