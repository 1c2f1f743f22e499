// Package secrets resolves secret references (env:NAME, file:PATH, aws-sm:SECRET_ID and
// aws-sm:SECRET_ID#json_key) to their values, caching each for a TTL.
//
// A caller that learns a value is no longer good (PostgreSQL answers SQLSTATE 28P01, invalid
// password, after a rotation) calls Invalidate, and the next Get fetches the value afresh.
// Concurrent Gets of one source share a single fetch. Errors name the reference, never a value.
// A plain value is not a reference and is rejected (there is no literal: scheme): a password
// belongs in a variable or a file that a reference names, not in a flag or a config listing.
//
// aws-sm: references are answered by AWS Secrets Manager's GetSecretValue (stage AWSCURRENT),
// through a client built from the standard AWS configuration chain: region from AWS_REGION or
// the shared config file, endpoint from AWS_ENDPOINT_URL_SECRETS_MANAGER or AWS_ENDPOINT_URL,
// credentials from the environment, the shared files or the instance/task role. The IAM policy
// that allows it is infra/iam-policies/secrets-manager-policy.json.
package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// DefaultTTL is how long a value is cached when Options.TTL is zero.
const DefaultTTL = 5 * time.Minute

// fetchTimeout bounds one fetch, which runs detached from the context of the Get that
// started it so that one caller giving up does not fail the others waiting on it.
const fetchTimeout = 30 * time.Second

// SecretsManagerClient is the part of *secretsmanager.Client the package calls. Every method
// here is an IAM action the application's role must be allowed (secretsmanager:<Method>).
type SecretsManagerClient interface {
	// GetSecretValue is secretsmanager.Client.GetSecretValue.
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// Options configures a Resolver. The zero value is ready to use.
type Options struct {
	// TTL is how long a fetched value is served from the cache before the next Get fetches it
	// again. Default: 5m.
	TTL time.Duration
	// Getenv reads env: references. Default: os.Getenv.
	Getenv func(string) string
	// SecretsManager answers aws-sm: references. Default: a client from
	// config.LoadDefaultConfig, built on the first aws-sm: fetch.
	SecretsManager SecretsManagerClient
}

// Resolver resolves secret references and caches their values. It is safe for concurrent use.
type Resolver struct {
	ttl    time.Duration
	getenv func(string) string

	smMu sync.Mutex // guards sm, built on first use
	sm   SecretsManagerClient

	mu      sync.Mutex // guards entries and every entry's fields
	entries map[Ref]*entry
}

// entry is the cache slot of one source.
type entry struct {
	value   string
	valid   bool      // value may be served: fetched and not invalidated since
	expires time.Time // when valid stops meaning fresh
	call    *call     // the fetch in flight, nil when none
}

// call is one fetch that every Get arriving while it runs waits for.
type call struct {
	done  chan struct{}
	value string
	err   error
}

// New returns a Resolver configured by opts.
func New(opts Options) *Resolver {
	r := &Resolver{
		ttl:     opts.TTL,
		getenv:  opts.Getenv,
		sm:      opts.SecretsManager,
		entries: make(map[Ref]*entry),
	}
	if r.ttl <= 0 {
		r.ttl = DefaultTTL
	}
	if r.getenv == nil {
		r.getenv = os.Getenv
	}
	return r
}

// Get returns the value ref names, from the cache while it is fresh, else fetched (one fetch
// for all concurrent callers). The value is never empty. When a refetch of an expired value
// fails, the expired value is returned instead, unless it was invalidated: an outage of
// Secrets Manager does not stop new database connections.
func (r *Resolver) Get(ctx context.Context, ref string) (string, error) {
	rf, err := ParseRef(ref)
	if err != nil {
		return "", err
	}
	raw, err := r.load(ctx, rf.source())
	if err != nil {
		return "", err
	}
	v := raw
	if rf.Key != "" {
		if v, err = jsonField(raw, rf.Key); err != nil {
			return "", fmt.Errorf("secrets: %s: %w", rf.source(), err)
		}
	}
	if v == "" {
		return "", fmt.Errorf("secrets: %s: value is empty", rf)
	}
	return v, nil
}

// Func returns a function that resolves ref with Get, in the shape of a password callback:
//
//	password := resolver.Func("aws-sm:muejam/production/database#password")
//	pgxConfig.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) (err error) {
//		cc.Password, err = password(ctx)
//		return err
//	}
//
// and on a connection error with SQLSTATE 28P01 (invalid_password), resolver.Invalidate(ref).
func (r *Resolver) Func(ref string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) { return r.Get(ctx, ref) }
}

// Invalidate drops the cached value of ref's source (aws-sm:X#a and aws-sm:X#b share one), so
// the next Get fetches it again and never falls back to the dropped value. A fetch already in
// flight is not restarted: its result becomes the cached value. A malformed ref is ignored.
func (r *Resolver) Invalidate(ref string) {
	rf, err := ParseRef(ref)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.entries[rf.source()]; e != nil {
		e.valid = false
	}
}

// load returns the raw value of src, from the cache or from the one fetch in flight.
func (r *Resolver) load(ctx context.Context, src Ref) (string, error) {
	r.mu.Lock()
	e := r.entries[src]
	if e == nil {
		e = &entry{}
		r.entries[src] = e
	}
	if e.valid && time.Now().Before(e.expires) {
		v := e.value
		r.mu.Unlock()
		return v, nil
	}
	c := e.call
	if c == nil {
		c = &call{done: make(chan struct{})}
		e.call = c
		go r.fetch(context.WithoutCancel(ctx), src, e, c)
	}
	r.mu.Unlock()

	select {
	case <-c.done:
		return c.value, c.err
	case <-ctx.Done():
		return "", fmt.Errorf("secrets: %s: %w", src, context.Cause(ctx))
	}
}

// fetch runs c: it reads src, updates e and wakes the waiters.
func (r *Resolver) fetch(ctx context.Context, src Ref, e *entry, c *call) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	v, err := r.read(ctx, src)

	r.mu.Lock()
	e.call = nil
	switch {
	case err == nil:
		e.value, e.valid, e.expires = v, true, time.Now().Add(r.ttl)
	case e.valid:
		v, err = e.value, nil // expired but not invalidated: better than failing
	}
	r.mu.Unlock()

	c.value, c.err = v, err
	close(c.done)
}

// read fetches the raw value of src from its source.
func (r *Resolver) read(ctx context.Context, src Ref) (string, error) {
	switch src.Scheme {
	case SchemeEnv:
		v := r.getenv(src.Name)
		if v == "" {
			return "", fmt.Errorf("secrets: %s: environment variable is not set or empty", src)
		}
		return v, nil
	case SchemeFile:
		b, err := os.ReadFile(src.Name)
		if err != nil {
			return "", fmt.Errorf("secrets: %s: %w", src, err)
		}
		s := strings.TrimSuffix(string(b), "\n")
		return strings.TrimSuffix(s, "\r"), nil
	case SchemeAWSSM:
		return r.readAWS(ctx, src)
	}
	return "", fmt.Errorf("secrets: %s: unknown scheme", src)
}

func (r *Resolver) readAWS(ctx context.Context, src Ref) (string, error) {
	sm, err := r.client(ctx)
	if err != nil {
		return "", fmt.Errorf("secrets: %s: %w", src, err)
	}
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId:     aws.String(src.Name),
		VersionStage: aws.String("AWSCURRENT"),
	})
	if err != nil {
		return "", fmt.Errorf("secrets: %s: %w", src, err)
	}
	switch {
	case out.SecretString != nil:
		return *out.SecretString, nil
	case out.SecretBinary != nil:
		return string(out.SecretBinary), nil
	}
	return "", fmt.Errorf("secrets: %s: secret has neither SecretString nor SecretBinary", src)
}

// client returns the Secrets Manager client, building the default one on first use. A
// failure is not remembered: the next fetch tries again.
func (r *Resolver) client(ctx context.Context) (SecretsManagerClient, error) {
	r.smMu.Lock()
	defer r.smMu.Unlock()
	if r.sm != nil {
		return r.sm, nil
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	r.sm = secretsmanager.NewFromConfig(cfg)
	return r.sm, nil
}

// jsonField extracts key from raw, a JSON object. A string is returned as is, a number or a
// boolean as its JSON text (an RDS secret's "port"). Errors repeat nothing of raw: a JSON
// syntax error quotes the offending character.
func jsonField(raw, key string) (string, error) {
	d := json.NewDecoder(strings.NewReader(raw))
	d.UseNumber()
	var obj map[string]any
	if err := d.Decode(&obj); err != nil || obj == nil {
		return "", errors.New("SecretString is not a JSON object")
	}
	v, ok := obj[key]
	if !ok {
		return "", fmt.Errorf("JSON key %q not found", key)
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case bool:
		return strconv.FormatBool(v), nil
	}
	return "", fmt.Errorf("JSON key %q is not a string, number or boolean", key)
}
