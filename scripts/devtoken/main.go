// Command devtoken prints a development JWT that the dev edge accepts: `make token
// USER=alice`. On first use it creates the dev key pair under -dir (default .run/dev-jwt/):
// private.pem, an Ed25519 private key (PKCS #8, mode 0600), and jwks.json, its public half
// as a JWKS for the jwt provider's jwks_file. Later runs reuse the pair. With -user empty it
// only makes sure the pair exists.
//
// The token is EdDSA-signed, carries the key's kid, and has sub=<user>, iss=-issuer,
// aud=-audience, iat=now and exp=now+ttl. These keys are for development only.
package main

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, time.Now()); err != nil {
		fmt.Fprintln(os.Stderr, "devtoken:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout io.Writer, now time.Time) error {
	fl := flag.NewFlagSet("devtoken", flag.ContinueOnError)
	dir := fl.String("dir", ".run/dev-jwt", "directory of the dev key pair (private.pem, jwks.json)")
	user := fl.String("user", "", "sub of the token; empty: only create the key pair")
	issuer := fl.String("issuer", "muejam-dev", "iss of the token")
	audience := fl.String("audience", "muejam-edge", "aud of the token")
	ttl := fl.Duration("ttl", time.Hour, "lifetime of the token")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	if *ttl <= 0 {
		return errors.New("-ttl must be positive")
	}
	key, kid, err := loadOrCreateKey(*dir)
	if err != nil {
		return err
	}
	if *user == "" {
		return nil
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.EdDSA, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid),
	)
	if err != nil {
		return err
	}
	token, err := jwt.Signed(signer).Claims(jwt.Claims{
		Subject:  *user,
		Issuer:   *issuer,
		Audience: jwt.Audience{*audience},
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(*ttl)),
	}).Serialize()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, token)
	return err
}

// loadOrCreateKey returns the dev private key under dir and its kid (the RFC 7638
// thumbprint), creating the pair when private.pem is missing.
func loadOrCreateKey(dir string) (ed25519.PrivateKey, string, error) {
	privPath := filepath.Join(dir, "private.pem")
	data, err := os.ReadFile(privPath)
	switch {
	case err == nil:
		block, _ := pem.Decode(data)
		if block == nil {
			return nil, "", fmt.Errorf("%s: no PEM block", privPath)
		}
		parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", privPath, err)
		}
		key, ok := parsed.(ed25519.PrivateKey)
		if !ok {
			return nil, "", fmt.Errorf("%s: not an Ed25519 key", privPath)
		}
		kid, err := thumbprint(key.Public())
		return key, kid, err
	case !errors.Is(err, fs.ErrNotExist):
		return nil, "", err
	}

	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	kid, err := thumbprint(key.Public())
	if err != nil {
		return nil, "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", err
	}
	jwks, err := json.MarshalIndent(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key:       key.Public(),
		KeyID:     kid,
		Algorithm: string(jose.EdDSA),
		Use:       "sig",
	}}}, "", "  ")
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", err
	}
	// The public half first: a private.pem without its jwks.json would never be repaired.
	if err := writeFileAtomic(filepath.Join(dir, "jwks.json"), append(jwks, '\n'), 0o644); err != nil {
		return nil, "", err
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := writeFileAtomic(privPath, privPEM, 0o600); err != nil {
		return nil, "", err
	}
	return key, kid, nil
}

func thumbprint(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// writeFileAtomic writes data to a temporary file beside path and renames it into place,
// so a reader (the edge reloading jwks.json) never sees half a file.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
