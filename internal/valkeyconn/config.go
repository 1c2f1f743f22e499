package valkeyconn

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/valkey-io/valkey-go"
)

// Config is how an edge module or the app server reaches Valkey: one server, or a cluster
// found from one or more seed nodes, with TLS and AUTH for a managed service such as
// ElastiCache (in-transit encryption, AUTH token or RBAC user).
//
// In JSON it is an object; a plain string is taken as one address, so configs written before
// clusters were supported still load.
type Config struct {
	// Addresses are host:port of the server, or seed nodes of a cluster (the client learns
	// the rest of the cluster from them). At least one.
	Addresses []string `json:"addresses,omitempty"`

	// Cluster requires a cluster: the client follows the slot map (MOVED and ASK redirects,
	// failovers, resharding) and a server that is not a cluster is an error. Without it the
	// mode is discovered from the server: a cluster node is used as a cluster, anything else
	// as one server. Default: false (discover).
	Cluster bool `json:"cluster,omitempty"`

	// Username is the AUTH user (Valkey/Redis ACL, ElastiCache RBAC); empty for the default
	// user. Placeholders such as {env.VALKEY_USERNAME} are replaced when the config loads.
	Username string `json:"username,omitempty"`

	// Password is the AUTH password or token; empty for none. Give it as a placeholder
	// ({env.VALKEY_PASSWORD} or {file./run/secrets/valkey}), never literally in a config
	// that is checked in; placeholders are replaced when the config loads.
	Password string `json:"password,omitempty"`

	// TLS, when set, connects over TLS.
	TLS *TLS `json:"tls,omitempty"`
}

// TLS is how the connection is encrypted and the server verified.
type TLS struct {
	// CAFile is a PEM file of the certificate authorities that sign the server's
	// certificate; empty for the system's roots (ElastiCache's certificates chain to them).
	CAFile string `json:"ca_file,omitempty"`

	// ServerName is the name checked against the server's certificate; default: the host
	// of each address.
	ServerName string `json:"server_name,omitempty"`
}

// UnmarshalJSON takes the object form or a plain address string.
func (c *Config) UnmarshalJSON(b []byte) error {
	var addr string
	if err := json.Unmarshal(b, &addr); err == nil {
		*c = Config{Addresses: SplitAddresses(addr)}
		return nil
	}
	type plain Config
	return json.Unmarshal(b, (*plain)(c))
}

// Configured reports whether any address is set: a module without one runs without Valkey.
func (c *Config) Configured() bool { return c != nil && len(c.Addresses) > 0 }

// SplitAddresses splits a comma- or space-separated list of addresses, as environment
// variables give them (VALKEY_ADDR=10.0.0.1:6379,10.0.0.2:6379).
func SplitAddresses(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

// Validate checks the addresses and the TLS settings.
func (c *Config) Validate() error {
	if len(c.Addresses) == 0 {
		return errors.New("valkey: at least one address is required")
	}
	for _, a := range c.Addresses {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("valkey: %q is not a host:port address", a)
		}
	}
	if c.TLS != nil && c.TLS.CAFile != "" {
		if _, err := os.Stat(c.TLS.CAFile); err != nil {
			return fmt.Errorf("valkey: tls ca_file: %w", err)
		}
	}
	return nil
}

// Replace returns c with placeholders in its credentials replaced by repl (in the edge,
// Caddy's replacer: cfgarg.Placeholders).
func (c Config) Replace(repl func(string) string) Config {
	c.Username, c.Password = repl(c.Username), repl(c.Password)
	c.Addresses = slices.Clone(c.Addresses)
	return c
}

// Key identifies the connection settings (without revealing the password), for sharing one
// connection between the modules and configs that name the same ones.
func (c Config) Key() string {
	var b strings.Builder
	b.WriteString(strings.Join(c.Addresses, ","))
	fmt.Fprintf(&b, "|cluster=%t|user=%s|pw=%d", c.Cluster, c.Username, len(c.Password))
	if c.TLS != nil {
		fmt.Fprintf(&b, "|tls=%s,%s", c.TLS.CAFile, c.TLS.ServerName)
	}
	return b.String()
}

// String names the server or cluster in logs and breaker names (no credentials).
func (c Config) String() string {
	s := strings.Join(c.Addresses, ",")
	if c.Cluster {
		s = "cluster " + s
	}
	if c.TLS != nil {
		s = "tls " + s
	}
	return s
}

// clientOption is valkey-go's option for c: standalone unless the server is (or c requires)
// a cluster, client-side caching off, credentials and TLS as configured.
func (c Config) clientOption() (valkey.ClientOption, error) {
	opt := valkey.ClientOption{
		InitAddress: slices.Clone(c.Addresses),
		Username:    c.Username,
		Password:    c.Password,
		// The edge sends short commands concurrently from many requests: auto-pipelining
		// stays on, client-side caching (RESP3 tracking) is not used.
		DisableCache: true,
	}
	if c.TLS != nil {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLS.ServerName}
		if c.TLS.CAFile != "" {
			pem, err := os.ReadFile(c.TLS.CAFile)
			if err != nil {
				return opt, fmt.Errorf("valkey tls: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return opt, fmt.Errorf("valkey tls: no certificate in %s", c.TLS.CAFile)
			}
			tc.RootCAs = pool
		}
		opt.TLSConfig = tc
	}
	return opt, nil
}

// ParseSwitch reads on/off as operators and environment variables write them (on/off,
// true/false, yes/no, 1/0; empty is off).
func ParseSwitch(s string) (on, ok bool) {
	switch strings.ToLower(s) {
	case "on", "true", "yes", "1":
		return true, true
	case "off", "false", "no", "0", "":
		return false, true
	}
	return false, false
}
