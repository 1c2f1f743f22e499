package secrets

import (
	"errors"
	"fmt"
	"strings"
)

// The schemes a reference may use.
const (
	SchemeEnv   = "env"    // env:NAME, an environment variable
	SchemeFile  = "file"   // file:PATH, a file's content less one trailing newline
	SchemeAWSSM = "aws-sm" // aws-sm:SECRET_ID[#json_key], an AWS Secrets Manager secret
)

const (
	maxSecretID  = 2048       // the longest SecretId GetSecretValue accepts (an ARN)
	secretIDChar = "/_+=.@-:" // besides letters and digits: name characters, and ':' for ARNs
	refSyntax    = "want env:NAME, file:PATH or aws-sm:SECRET_ID[#json_key]"
)

// errNoScheme is returned for a value that names no known scheme. It repeats nothing of the
// value: a value without a scheme is most likely a password pasted where its reference belongs.
var errNoScheme = errors.New("secrets: not a secret reference: " + refSyntax)

// Ref is a parsed secret reference. A plain value is not a reference: there is no literal
// scheme, so a password never sits in a flag, an environment listing or a config dump; put it
// in an environment variable and write env:NAME instead.
type Ref struct {
	// Scheme is SchemeEnv, SchemeFile or SchemeAWSSM.
	Scheme string
	// Name is the environment variable's name, the file's path or the secret's id (a name
	// such as muejam/production/database, or an ARN).
	Name string
	// Key, for SchemeAWSSM only, is the key to extract from a SecretString that holds a JSON
	// object; empty means the whole SecretString.
	Key string
}

// ParseRef parses env:NAME, file:PATH, aws-sm:SECRET_ID and aws-sm:SECRET_ID#json_key. Its
// errors name the scheme and, for a known scheme, the variable, path or secret id, never
// anything of a value without a known scheme.
func ParseRef(s string) (Ref, error) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Ref{}, errNoScheme
	}
	switch scheme {
	case SchemeEnv:
		if !validEnvName(rest) {
			return Ref{}, fmt.Errorf("secrets: invalid env: reference %q: want env:NAME with NAME of letters, digits and _", s)
		}
		return Ref{Scheme: SchemeEnv, Name: rest}, nil
	case SchemeFile:
		if rest == "" || strings.ContainsRune(rest, 0) {
			return Ref{}, fmt.Errorf("secrets: invalid file: reference %q: want file:PATH", s)
		}
		return Ref{Scheme: SchemeFile, Name: rest}, nil
	case SchemeAWSSM:
		id, key, hasKey := strings.Cut(rest, "#")
		if !validSecretID(id) || (hasKey && key == "") {
			return Ref{}, fmt.Errorf("secrets: invalid aws-sm: reference %q: want aws-sm:SECRET_ID or aws-sm:SECRET_ID#json_key", s)
		}
		return Ref{Scheme: SchemeAWSSM, Name: id, Key: key}, nil
	}
	return Ref{}, errNoScheme
}

// String returns the reference in the form ParseRef reads.
func (r Ref) String() string {
	s := r.Scheme + ":" + r.Name
	if r.Key != "" {
		s += "#" + r.Key
	}
	return s
}

// source is the reference without its JSON key: what is fetched and cached, so that
// aws-sm:X#username and aws-sm:X#password share one fetch and one invalidation.
func (r Ref) source() Ref { return Ref{Scheme: r.Scheme, Name: r.Name} }

func validEnvName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range s {
		if !isAlnum(c) && c != '_' {
			return false
		}
	}
	return true
}

func validSecretID(s string) bool {
	if s == "" || len(s) > maxSecretID {
		return false
	}
	for _, c := range s {
		if !isAlnum(c) && !strings.ContainsRune(secretIDChar, c) {
			return false
		}
	}
	return true
}

func isAlnum(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
