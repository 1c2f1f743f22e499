package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

const (
	testAccessKey = "AKIDMUEJAMTEST"
	testRegion    = "us-east-1"
)

// fakeSM speaks the AWS JSON 1.1 protocol of Secrets Manager for GetSecretValue. It checks
// each request the way the service would (method, path, target, content type, a SigV4
// signature header for this region and service) and counts the requests.
type fakeSM struct {
	t    *testing.T
	gate chan struct{} // when non-nil, every answer waits for it to be closed

	mu       sync.Mutex
	secrets  map[string]string // SecretId -> SecretString
	requests int
	stages   []string // VersionStage of each request
}

func newFakeSM(t *testing.T, secrets map[string]string) *fakeSM {
	return &fakeSM{t: t, secrets: secrets}
}

// set changes (rotates) or, with value "", deletes a secret.
func (f *fakeSM) set(id, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if value == "" {
		delete(f.secrets, id)
		return
	}
	f.secrets[id] = value
}

func (f *fakeSM) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// versionStages returns the VersionStage of each request so far.
func (f *fakeSM) versionStages() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.stages)
}

func (f *fakeSM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.gate != nil {
		<-f.gate
	}
	auth := r.Header.Get("Authorization")
	wantCred := "Credential=" + testAccessKey + "/"
	wantScope := "/" + testRegion + "/secretsmanager/aws4_request"
	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/":
		f.t.Errorf("request %s %s, want POST /", r.Method, r.URL.Path)
	case r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue":
		f.t.Errorf("X-Amz-Target = %q, want secretsmanager.GetSecretValue", r.Header.Get("X-Amz-Target"))
	case r.Header.Get("Content-Type") != "application/x-amz-json-1.1":
		f.t.Errorf("Content-Type = %q, want application/x-amz-json-1.1", r.Header.Get("Content-Type"))
	case !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") || !strings.Contains(auth, wantCred) ||
		!strings.Contains(auth, wantScope) || !strings.Contains(auth, "x-amz-target") || !strings.Contains(auth, "Signature="):
		f.t.Errorf("Authorization = %q, want a SigV4 signature with %s...%s covering x-amz-target", auth, wantCred, wantScope)
	case r.Header.Get("X-Amz-Date") == "":
		f.t.Errorf("no X-Amz-Date header")
	}

	var in struct{ SecretId, VersionStage string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		f.t.Errorf("request body: %v", err)
	}
	f.mu.Lock()
	f.requests++
	f.stages = append(f.stages, in.VersionStage)
	value, ok := f.secrets[in.SecretId]
	f.mu.Unlock()

	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", "fake-request-id")
	if !ok {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}`)
		return
	}
	err := json.NewEncoder(w).Encode(map[string]any{
		"ARN":           "arn:aws:secretsmanager:" + testRegion + ":123456789012:secret:" + in.SecretId + "-AbCdEf",
		"Name":          in.SecretId,
		"SecretString":  value,
		"VersionId":     "00000000-0000-0000-0000-000000000001",
		"VersionStages": []string{"AWSCURRENT"},
		"CreatedDate":   1.7645e9,
	})
	if err != nil {
		f.t.Errorf("writing the answer: %v", err)
	}
}

// serve starts fake on 127.0.0.1 and returns a real Secrets Manager client pointed at it.
// Keep-alives are off so that no idle connection outlives a request: inside a synctest bubble
// a goroutine reading a socket would keep the fake clock from moving.
func serve(t *testing.T, fake *fakeSM) SecretsManagerClient {
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return newClient(srv.URL, &http.Transport{DisableKeepAlives: true})
}

func newClient(endpoint string, rt http.RoundTripper) *secretsmanager.Client {
	return secretsmanager.New(secretsmanager.Options{
		Region:       testRegion,
		BaseEndpoint: aws.String(endpoint),
		HTTPClient:   &http.Client{Transport: rt},
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: testAccessKey, SecretAccessKey: "test-secret-key", Source: "test"}, nil
		}),
	})
}

// inProcess is a RoundTripper that hands each request to a handler in the same process,
// with no socket: inside a synctest bubble a handler blocked on a channel is durably
// blocked, so synctest.Wait can tell when every caller is waiting.
type inProcess struct{ h http.Handler }

func (p inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	p.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// TestAWSDefaultConfigChain builds the client the way production does, from the standard
// AWS configuration chain (environment variables here), and checks the wire exchange.
func TestAWSDefaultConfigChain(t *testing.T) {
	fake := newFakeSM(t, map[string]string{"muejam/dev/database": "pw-from-aws"})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	isolateAWSEnv(t)
	t.Setenv("AWS_REGION", testRegion)
	t.Setenv("AWS_ACCESS_KEY_ID", testAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret-key")
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", srv.URL)

	got, err := New(Options{}).Get(t.Context(), "aws-sm:muejam/dev/database")
	if err != nil || got != "pw-from-aws" {
		t.Fatalf("Get = %q, %v; want pw-from-aws", got, err)
	}
	if stages := fake.versionStages(); !slices.Equal(stages, []string{"AWSCURRENT"}) {
		t.Errorf("requests asked for stages %q, want one request for AWSCURRENT", stages)
	}
}

// isolateAWSEnv keeps the developer's own AWS configuration out of a test.
func isolateAWSEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", dir+"/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, k := range []string{"AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"} {
		t.Setenv(k, "")
	}
}

// TestAWSCacheTTL counts requests at the fake while the synctest clock moves past the TTL.
func TestAWSCacheTTL(t *testing.T) {
	fake := newFakeSM(t, map[string]string{"muejam/db": "v1"})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	synctest.Test(t, func(t *testing.T) {
		r := New(Options{TTL: time.Minute, SecretsManager: newClient(srv.URL, &http.Transport{DisableKeepAlives: true})})
		get := func() string {
			t.Helper()
			v, err := r.Get(t.Context(), "aws-sm:muejam/db")
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		for range 3 {
			get()
		}
		advanceFakeClock(59 * time.Second)
		get()
		if n := fake.count(); n != 1 {
			t.Errorf("requests within the TTL = %d, want 1", n)
		}
		fake.set("muejam/db", "v2")
		advanceFakeClock(2 * time.Second)
		if v := get(); v != "v2" {
			t.Errorf("after the TTL: %q, want v2", v)
		}
		if n := fake.count(); n != 2 {
			t.Errorf("requests after the TTL = %d, want 2", n)
		}
	})
}

// TestAWSRotation: the database rejects the old password, the caller invalidates, the next
// Get returns the rotated value.
func TestAWSRotation(t *testing.T) {
	fake := newFakeSM(t, map[string]string{"muejam/db": `{"username":"muejam","password":"pw-1"}`})
	r := New(Options{SecretsManager: serve(t, fake)})
	const ref = "aws-sm:muejam/db#password"
	password := r.Func(ref)
	if got, err := password(t.Context()); err != nil || got != "pw-1" {
		t.Fatalf("Get = %q, %v; want pw-1", got, err)
	}
	fake.set("muejam/db", `{"username":"muejam","password":"pw-2"}`)
	if got, _ := password(t.Context()); got != "pw-1" {
		t.Errorf("before Invalidate: %q, want the cached pw-1", got)
	}
	r.Invalidate(ref)
	if got, err := password(t.Context()); err != nil || got != "pw-2" {
		t.Errorf("after Invalidate: %q, %v; want pw-2", got, err)
	}
	if n := fake.count(); n != 2 {
		t.Errorf("requests = %d, want 2", n)
	}
}

func TestAWSJSONKey(t *testing.T) {
	const values = `{"username":"muejam","password":"pw-json","port":5432,"ssl":true,"extra":{"a":1}}`
	fake := newFakeSM(t, map[string]string{"muejam/db": values, "muejam/plain": "pw-plain"})
	r := New(Options{SecretsManager: serve(t, fake)})
	ctx := t.Context()
	for key, want := range map[string]string{"password": "pw-json", "username": "muejam", "port": "5432", "ssl": "true"} {
		if got, err := r.Get(ctx, "aws-sm:muejam/db#"+key); err != nil || got != want {
			t.Errorf("#%s = %q, %v; want %q", key, got, err, want)
		}
	}
	if n := fake.count(); n != 1 {
		t.Errorf("requests = %d, want 1 shared by every key of the secret", n)
	}

	for _, tt := range []struct{ ref, wantErr string }{
		{"aws-sm:muejam/db#nope", `JSON key "nope" not found`},
		{"aws-sm:muejam/db#extra", `JSON key "extra" is not a string`},
		{"aws-sm:muejam/plain#password", "not a JSON object"},
	} {
		_, err := r.Get(ctx, tt.ref)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: err = %v, want %q", tt.ref, err, tt.wantErr)
			continue
		}
		assertNoValue(t, err, "pw-json", "pw-plain", "muejam\"")
	}
	if got, err := r.Get(ctx, "aws-sm:muejam/plain"); err != nil || got != "pw-plain" {
		t.Errorf("whole SecretString = %q, %v; want pw-plain", got, err)
	}
}

func TestAWSNotFound(t *testing.T) {
	fake := newFakeSM(t, map[string]string{"muejam/db": "pw-present"})
	r := New(Options{SecretsManager: serve(t, fake)})
	_, err := r.Get(t.Context(), "aws-sm:muejam/missing#password")
	if err == nil {
		t.Fatal("no error for a missing secret")
	}
	for _, want := range []string{"aws-sm:muejam/missing", "ResourceNotFoundException"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to contain %q", err, want)
		}
	}
	assertNoValue(t, err, "pw-present")
	if n := fake.count(); n != 1 {
		t.Errorf("requests = %d, want 1 (a missing secret is not retried)", n)
	}
}

// TestAWSStaleOnError: an expired value outlives a failing refetch, an invalidated one does not.
func TestAWSStaleOnError(t *testing.T) {
	fake := newFakeSM(t, map[string]string{"muejam/db": "pw-old"})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	synctest.Test(t, func(t *testing.T) {
		r := New(Options{TTL: time.Minute, SecretsManager: newClient(srv.URL, &http.Transport{DisableKeepAlives: true})})
		const ref = "aws-sm:muejam/db"
		if _, err := r.Get(t.Context(), ref); err != nil {
			t.Fatal(err)
		}
		fake.set("muejam/db", "")
		advanceFakeClock(2 * time.Minute)
		if got, err := r.Get(t.Context(), ref); err != nil || got != "pw-old" {
			t.Errorf("refetch failed: Get = %q, %v; want the expired pw-old", got, err)
		}
		r.Invalidate(ref)
		if _, err := r.Get(t.Context(), ref); err == nil {
			t.Error("after Invalidate a failing fetch returned a value, want its error")
		}
		if n := fake.count(); n != 3 {
			t.Errorf("requests = %d, want 3", n)
		}
	})
}

// TestAWSConcurrentGetsShareOneFetch holds the fake's answer until every caller waits, then
// checks that they all got the value from one request, and that a caller who gave up early
// got its own context's error without failing the others.
func TestAWSConcurrentGetsShareOneFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := newFakeSM(t, map[string]string{"muejam/db": `{"password":"pw-shared"}`})
		fake.gate = make(chan struct{})
		// The endpoint is never dialled: inProcess answers in the bubble.
		r := New(Options{SecretsManager: newClient("http://127.0.0.1:1", inProcess{fake})})

		const callers = 20
		got := make([]string, callers)
		errs := make([]error, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() { got[i], errs[i] = r.Get(t.Context(), "aws-sm:muejam/db#password") })
		}
		ctx, cancel := context.WithCancel(t.Context())
		var cancelledErr error
		wg.Go(func() { _, cancelledErr = r.Get(ctx, "aws-sm:muejam/db#password") })
		synctest.Wait() // every caller is blocked on the one fetch, held at the fake
		cancel()
		synctest.Wait()
		close(fake.gate)
		wg.Wait()

		for i := range callers {
			if errs[i] != nil || got[i] != "pw-shared" {
				t.Errorf("caller %d: %q, %v; want pw-shared", i, got[i], errs[i])
			}
		}
		if !errors.Is(cancelledErr, context.Canceled) {
			t.Errorf("cancelled caller: err = %v, want context.Canceled", cancelledErr)
		}
		if n := fake.count(); n != 1 {
			t.Errorf("requests = %d, want 1", n)
		}
	})
}

func assertNoValue(t *testing.T, err error, values ...string) {
	t.Helper()
	for _, v := range values {
		if strings.Contains(err.Error(), v) {
			t.Errorf("error repeats a secret value %q: %q", v, err)
		}
	}
}
