// Package rywtoken is the read-your-writes token shared by the app server, which issues it
// after a write and honours it on reads (appserver/dbrouter), and the edge, which lets a
// request carrying a valid one skip its cache (modules/readyourwrites).
//
// A token says "this client committed at WAL position LSN at time Issued": reads must see
// that commit, so they go to a node that has replayed it, and no cached answer computed
// before it will do. Anyone can send a token, so it is signed: the bytes
//
//	version (1, = 2) | LSN (8, big endian) | issued, Unix ms (8) | tag (16)
//
// in unpadded base64url (44 characters), where tag is HMAC-SHA256 over "muejam-ryw\x00" and
// the first 17 bytes, truncated to 128 bits, under a key of at least 32 bytes. A token is
// honoured only while it is younger than the TTL (and not from more than MaxSkew in the
// future); anything else, a forged, truncated, tampered or expired token, is ignored and
// reported as such (Outcome) so that callers can count it.
//
// Keys rotate: Keys signs with its first key and verifies with any of them, so a new key
// can be deployed with the old one still accepted (READ_YOUR_WRITES_KEY_PREVIOUS) until every
// token signed with it has expired (one TTL, 30s by default).
package rywtoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// HTTP names of the token.
const (
	// Header carries the token in responses to writes and in requests.
	Header = "X-Read-Your-Writes"
	// Cookie is the name of the cookie that carries the token for browsers.
	Cookie = "ryw"
)

// MinKeyLen is the length in bytes a key must at least have.
const MinKeyLen = 32

// MaxSkew is how far in the future a token's issue time may be (clock skew between the
// app server that signed it and the node that verifies it).
const MaxSkew = time.Minute

// DevKey is the key of the development stack, public and so worthless as a secret: the app
// server uses it when READ_YOUR_WRITES_KEY is unset (make run, the tests) and the dev
// Caddyfiles' read_your_writes matchers with dev_key when theirs is unset. Production sets
// READ_YOUR_WRITES_KEY from Secrets Manager, and production.Caddyfile has no dev_key.
const DevKey = "muejam-DEVELOPMENT-ONLY-read-your-writes-key-not-a-secret"

const (
	version    = 2
	bodyLen    = 1 + 8 + 8
	tagLen     = 16
	tokenLen   = bodyLen + tagLen
	encodedLen = (tokenLen*8 + 5) / 6 // unpadded base64
)

// domain separates this MAC from any other use of the key.
const domain = "muejam-ryw\x00"

// Claims is what a token says: the WAL position of a commit and when it was made.
type Claims struct {
	LSN    uint64
	Issued time.Time
}

// Outcome is what verifying a token found.
type Outcome uint8

// Outcomes of Verify and FromRequest.
const (
	// Absent: the request carries no token.
	Absent Outcome = iota
	// Valid: signed with one of the keys, not expired, not from the future.
	Valid
	// Invalid: malformed, of another version, or its tag matches no key (forged, tampered,
	// truncated, or signed with a key no longer accepted).
	Invalid
	// Expired: valid, but older than the TTL.
	Expired
	// Future: valid, but issued more than MaxSkew from now.
	Future
)

// Outcomes are the outcomes of a token that is present, in the order of their constants:
// the label values of the metrics that count them.
var Outcomes = []Outcome{Valid, Invalid, Expired, Future}

// String returns the outcome as a metric label: absent, valid, invalid, expired or future.
func (o Outcome) String() string {
	switch o {
	case Valid:
		return "valid"
	case Invalid:
		return "invalid"
	case Expired:
		return "expired"
	case Future:
		return "future"
	default:
		return "absent"
	}
}

// Keys signs and verifies tokens. It is safe for concurrent use.
type Keys struct {
	keys [][]byte // the first signs; all verify
}

// NewKeys returns the Keys that sign with current and verify with current and every
// non-empty previous. Each key must be at least MinKeyLen bytes.
func NewKeys(current string, previous ...string) (*Keys, error) {
	if current == "" {
		return nil, errors.New("rywtoken: no key")
	}
	k := &Keys{}
	for i, s := range append([]string{current}, previous...) {
		if s == "" {
			continue
		}
		if len(s) < MinKeyLen {
			which := "the key"
			if i > 0 {
				which = "a previous key"
			}
			return nil, fmt.Errorf("rywtoken: %s is %d bytes, want at least %d", which, len(s), MinKeyLen)
		}
		k.keys = append(k.keys, []byte(s))
	}
	return k, nil
}

// tag computes the tag of body under key into dst.
func tag(dst, key, body []byte) {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(domain))
	m.Write(body)
	copy(dst, m.Sum(nil))
}

// Sign encodes c as a token signed with the current key.
func (k *Keys) Sign(c Claims) string {
	var b [tokenLen]byte
	b[0] = version
	binary.BigEndian.PutUint64(b[1:], c.LSN)
	binary.BigEndian.PutUint64(b[9:], uint64(c.Issued.UnixMilli()))
	tag(b[bodyLen:], k.keys[0], b[:bodyLen])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Verify decodes s and checks its tag against every key, then its age against ttl at now.
// Only a Valid outcome comes with the token's Claims; any other gives zero Claims.
func (k *Keys) Verify(s string, ttl time.Duration, now time.Time) (Claims, Outcome) {
	var b [tokenLen]byte
	if len(s) != encodedLen {
		return Claims{}, Invalid
	}
	if n, err := base64.RawURLEncoding.Decode(b[:], []byte(s)); err != nil || n != tokenLen || b[0] != version {
		return Claims{}, Invalid
	}
	var want [tagLen]byte
	ok := false
	for _, key := range k.keys {
		tag(want[:], key, b[:bodyLen])
		ok = hmac.Equal(want[:], b[bodyLen:]) || ok
	}
	if !ok {
		return Claims{}, Invalid
	}
	c := Claims{LSN: binary.BigEndian.Uint64(b[1:]), Issued: time.UnixMilli(int64(binary.BigEndian.Uint64(b[9:])))}
	switch age := now.Sub(c.Issued); {
	case c.LSN == 0:
		return Claims{}, Invalid
	case age < -MaxSkew:
		return Claims{}, Future
	case age > ttl:
		return Claims{}, Expired
	}
	return c, Valid
}

// FromRequest verifies the token of req: the X-Read-Your-Writes header, else the cookie
// named exactly ryw. When both are there and the header's is not valid, the cookie's is
// tried; the outcome is then the cookie's if it is valid, else the header's. Absent when
// req carries neither.
func (k *Keys) FromRequest(req *http.Request, ttl time.Duration, now time.Time) (Claims, Outcome) {
	out := Absent
	if h := req.Header.Get(Header); h != "" {
		var c Claims
		if c, out = k.Verify(h, ttl, now); out == Valid {
			return c, out
		}
	}
	if ck, err := req.Cookie(Cookie); err == nil && ck.Value != "" {
		c, o := k.Verify(ck.Value, ttl, now)
		if o == Valid || out == Absent {
			return c, o
		}
	}
	return Claims{}, out
}
