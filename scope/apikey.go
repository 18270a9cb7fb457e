package scope

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"
)

// API keys are bearer credentials for machine clients that have no
// identity provider. A key reads
//
//	smk_live_<id>_<secret>    or    smk_test_<id>_<secret>
//
// where id is 12 and secret 32 characters of lowercase base32 (no
// padding). The id is not secret: it names the stored record, so a lookup
// is one indexed read. The secret carries 160 random bits from
// crypto/rand. Only SHA-256 of the whole key is stored: a key has far more
// entropy than any password, so a slow password hash would add cost on
// every request without making a stolen hash any easier to reverse.
const (
	// APIKeyPrefix starts every API key; a bearer token with this prefix
	// is checked as a key, never as a JWT.
	APIKeyPrefix = "smk_"
	// LiveKeyPrefix and TestKeyPrefix tell live keys from test keys.
	LiveKeyPrefix = "smk_live_"
	TestKeyPrefix = "smk_test_"

	apiKeyIDLen     = 12 // 60 bits
	apiKeySecretLen = 32 // 160 bits
	apiKeyLen       = len(LiveKeyPrefix) + apiKeyIDLen + 1 + apiKeySecretLen
)

var keyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// APIKey is the stored record of an API key: never the key itself, only
// its hash, and the identity it stands for.
type APIKey struct {
	// ID is the key's public id (the part after smk_live_).
	ID string
	// Hash is SHA-256 of the whole key ([HashAPIKey]).
	Hash []byte
	// Identity is who the key acts as. Session is always empty.
	Identity Identity
	// Test reports a smk_test_ key.
	Test bool
	// CreatedAt is when the key was made.
	CreatedAt time.Time
	// ExpiresAt is when the key stops working; nil never. Rotating a key
	// sets it to the end of the grace period.
	ExpiresAt *time.Time
	// RevokedAt is when the key was revoked; nil while it is not.
	RevokedAt *time.Time
	// ReplacedBy is the id of the key that replaced this one by rotation.
	ReplacedBy string
}

// Usable reports why the key may not be used at now, or nil when it may.
// The error wraps [ErrInvalidToken].
func (k APIKey) Usable(now time.Time) error {
	switch {
	case k.RevokedAt != nil && !now.Before(*k.RevokedAt):
		return &TokenError{Reason: "API key " + k.ID + " was revoked"}
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		if k.ReplacedBy != "" {
			return &TokenError{Reason: "API key " + k.ID + " was rotated and its grace period is over; use key " + k.ReplacedBy}
		}
		return &TokenError{Reason: "API key " + k.ID + " expired"}
	}
	return nil
}

// ErrMalformedAPIKey means a string is not an API key of the form above.
// It wraps [ErrInvalidToken].
var ErrMalformedAPIKey = fmt.Errorf("%w: malformed API key: want smk_live_<12 chars>_<32 chars>", ErrInvalidToken)

// NewAPIKey draws a new key from crypto/rand and returns it (to show once)
// with its record, which holds only the hash. The caller fills in the
// identity and times and stores the record.
func NewAPIKey(test bool) (key string, rec APIKey, err error) {
	var idb [8]byte   // 13 base32 characters, cut to 12 (60 bits)
	var secb [20]byte // 32 base32 characters (160 bits)
	if _, err := rand.Read(idb[:]); err != nil {
		return "", APIKey{}, fmt.Errorf("api key: %w", err)
	}
	if _, err := rand.Read(secb[:]); err != nil {
		return "", APIKey{}, fmt.Errorf("api key: %w", err)
	}
	id := keyEncoding.EncodeToString(idb[:])[:apiKeyIDLen]
	prefix := LiveKeyPrefix
	if test {
		prefix = TestKeyPrefix
	}
	key = prefix + id + "_" + keyEncoding.EncodeToString(secb[:])
	return key, APIKey{ID: id, Hash: HashAPIKey(key), Test: test}, nil
}

// ParseAPIKey checks the form of a key and returns its id. Errors wrap
// [ErrInvalidToken].
func ParseAPIKey(key string) (id string, test bool, err error) {
	var rest string
	switch {
	case strings.HasPrefix(key, LiveKeyPrefix):
		rest = key[len(LiveKeyPrefix):]
	case strings.HasPrefix(key, TestKeyPrefix):
		rest, test = key[len(TestKeyPrefix):], true
	default:
		return "", false, ErrMalformedAPIKey
	}
	if len(key) != apiKeyLen || rest[apiKeyIDLen] != '_' {
		return "", false, ErrMalformedAPIKey
	}
	id, secret := rest[:apiKeyIDLen], rest[apiKeyIDLen+1:]
	if !validKeyChars(id) || !validKeyChars(secret) {
		return "", false, ErrMalformedAPIKey
	}
	return id, test, nil
}

// ValidAPIKeyID reports whether s has the form of a key id.
func ValidAPIKeyID(s string) bool { return len(s) == apiKeyIDLen && validKeyChars(s) }

func validKeyChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// HashAPIKey returns SHA-256 of the key, the only form in which a key is
// stored.
func HashAPIKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// ErrUnknownAPIKey is what an [APIKeyLookup] returns (wrapped or not) when
// no key has the id.
var ErrUnknownAPIKey = errors.New("unknown API key")

// APIKeyLookup returns the stored record of the key with this id, or an
// error wrapping [ErrUnknownAPIKey].
type APIKeyLookup func(ctx context.Context, id string) (APIKey, error)

// APIKeyVerifier checks API keys against stored records.
type APIKeyVerifier struct {
	// Lookup finds a record by key id. Required.
	Lookup APIKeyLookup
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// KeyFailure is the error of a rejected API key whose record was found:
// it names the key's org so that the failure can be audited there. It
// unwraps to the reason (a *[TokenError], matching [ErrInvalidToken]).
type KeyFailure struct {
	KeyID string
	Org   string
	Err   error
}

func (e *KeyFailure) Error() string { return e.Err.Error() }

// Unwrap returns the reason.
func (e *KeyFailure) Unwrap() error { return e.Err }

// Verify is a [Verifier] for API keys: it parses the key, looks its record
// up by id, compares hashes in constant time and checks expiry and
// revocation. Every rejection wraps [ErrInvalidToken]; one whose record was
// found is a *[KeyFailure]. A lookup failure other than an unknown id is
// returned as is (it is the store's, not the caller's, fault).
func (v *APIKeyVerifier) Verify(ctx context.Context, key string) (Identity, error) {
	id, _, err := ParseAPIKey(key)
	if err != nil {
		return Identity{}, err
	}
	rec, err := v.Lookup(ctx, id)
	if errors.Is(err, ErrUnknownAPIKey) {
		return Identity{}, &TokenError{Reason: "unknown API key", Err: err}
	}
	if err != nil {
		return Identity{}, fmt.Errorf("api key lookup: %w", err)
	}
	if subtle.ConstantTimeCompare(rec.Hash, HashAPIKey(key)) != 1 {
		return Identity{}, &KeyFailure{KeyID: id, Org: rec.Identity.Org, Err: &TokenError{Reason: "API key does not match"}}
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	if err := rec.Usable(now()); err != nil {
		return Identity{}, &KeyFailure{KeyID: id, Org: rec.Identity.Org, Err: err}
	}
	ident := rec.Identity
	ident.Session = ""
	if err := ident.Validate(); err != nil {
		return Identity{}, &KeyFailure{KeyID: id, Org: rec.Identity.Org, Err: err}
	}
	return ident, nil
}
