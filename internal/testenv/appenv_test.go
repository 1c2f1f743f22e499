package testenv

import "testing"

func TestAppServerEnvHasTheDefaults(t *testing.T) {
	env := AppServerEnv(t)
	for name, want := range map[string]string{
		"APP_ADDR":              "127.0.0.1:8081",
		"DATABASE_REPLICA_URLS": "postgres://postgres@127.0.0.1:55433/muejam?sslmode=disable",
		"DB_MAX_LAG":            "10s",
		"DATABASE_PASSWORD":     "", // none
	} {
		got, ok := env[name]
		if !ok || got != want {
			t.Errorf("AppServerEnv()[%q] = %q, %v; want %q", name, got, ok, want)
		}
	}
}

func TestNewValkeyAnswers(t *testing.T) {
	addr := NewValkey(t)
	if !ping(addr) {
		t.Fatalf("private Valkey on %s does not answer", addr)
	}
	if addr == ValkeyAddr {
		t.Fatal("NewValkey returned the shared server")
	}
}
