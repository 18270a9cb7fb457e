package scope

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrInvalidToken means the credential was missing, malformed, expired,
	// forged or otherwise unusable. HTTP answers it with 401.
	ErrInvalidToken = errors.New("invalid token")
	// ErrForbidden means the identity is valid but lacks a permission or may
	// not use a scope.
	ErrForbidden = errors.New("forbidden")
	// ErrBadScope means a scope string could not be parsed or names a scope
	// that does not exist for this identity.
	ErrBadScope = errors.New("bad scope")
)

// Permission is an OAuth-style permission string.
type Permission string

// The permissions scopemem knows.
const (
	PermRead  Permission = "memory:read"  // search, list and read memories
	PermWrite Permission = "memory:write" // add, update and delete in session, agent and user scopes
	PermShare Permission = "memory:share" // write to team and org scopes
	PermPurge Permission = "memory:purge" // purge one's own scopes (and shared ones with memory:share)
	PermAdmin Permission = "memory:admin" // everything, on any scope of the org
)

// AllPermissions lists every permission, in the order above.
var AllPermissions = []Permission{PermRead, PermWrite, PermShare, PermPurge, PermAdmin}

// ParsePermissions parses a list of permission strings separated by commas or
// spaces (the JWT "scope" claim uses spaces). Unknown strings are an error.
func ParsePermissions(s string) ([]Permission, error) {
	var out []Permission
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		p := Permission(f)
		if !slices.Contains(AllPermissions, p) {
			return nil, fmt.Errorf("unknown permission %q (known: memory:read, memory:write, memory:share, memory:purge, memory:admin)", f)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Kind is the kind of a scope.
type Kind string

// The scope kinds, narrowest first.
const (
	KindSession Kind = "session"
	KindAgent   Kind = "agent"
	KindUser    Kind = "user"
	KindTeam    Kind = "team"
	KindOrg     Kind = "org"
)

// Rank orders kinds from narrowest (0) to widest (4); an unknown kind ranks 5.
func (k Kind) Rank() int {
	switch k {
	case KindSession:
		return 0
	case KindAgent:
		return 1
	case KindUser:
		return 2
	case KindTeam:
		return 3
	case KindOrg:
		return 4
	}
	return 5
}

// Scope is a resolved scope inside one org: a kind and the id that tells it
// apart from others of that kind. ID is "user/session-key" for session,
// "user/agent" for agent, the user id for user, the team id for team and
// empty for org. A Scope is always relative to an org that comes from an
// Identity, never from input.
type Scope struct {
	Kind Kind
	ID   string
}

// String writes the scope the way a caller names it: "session", "agent",
// "user", "team:<id>" or "org". Session, agent and user scopes of other users
// (seen only by admins purging) are written "user:<id>"-relative by
// [Scope.Qualified].
func (s Scope) String() string {
	if s.Kind == KindTeam {
		return "team:" + s.ID
	}
	return string(s.Kind)
}

// Qualified writes the scope with its id, unambiguous within an org:
// "session:alice/k1", "agent:alice/coder", "user:alice", "team:api", "org".
func (s Scope) Qualified() string {
	if s.Kind == KindOrg {
		return "org"
	}
	return string(s.Kind) + ":" + s.ID
}

// Identity is a verified caller. Org and User are always set for a usable
// identity. Session is the session key of the transport (an MCP session id,
// or one key per stdio process); it may be empty.
type Identity struct {
	Org         string
	User        string
	Teams       []string
	Agent       string
	Session     string
	Permissions []Permission
}

// Validate reports whether the identity is usable: org and user set, ids
// free of the separator characters scope ids use.
func (id Identity) Validate() error {
	if id.Org == "" {
		return fmt.Errorf("%w: no org", ErrInvalidToken)
	}
	if id.User == "" {
		return fmt.Errorf("%w: no user", ErrInvalidToken)
	}
	for _, v := range append([]string{id.Org, id.User, id.Agent, id.Session}, id.Teams...) {
		if err := checkID(v); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidToken, err)
		}
	}
	return nil
}

// checkID rejects ids that would make scope ids ambiguous or unprintable.
func checkID(v string) error {
	if len(v) > 256 {
		return fmt.Errorf("id %.20q... is longer than 256 bytes", v)
	}
	for _, r := range v {
		if r == '/' || r == ':' || unicode.IsControl(r) || r == '\uFFFD' {
			return fmt.Errorf("id %q contains %q; ids may not contain '/', ':' or control characters", v, r)
		}
	}
	return nil
}

// Has reports whether the identity holds p. memory:admin implies every
// permission.
func (id Identity) Has(p Permission) bool {
	return slices.Contains(id.Permissions, p) || slices.Contains(id.Permissions, PermAdmin)
}

// Require returns nil if the identity holds every permission in ps, and
// otherwise an error wrapping [ErrForbidden] that names the missing one.
func (id Identity) Require(ps ...Permission) error {
	for _, p := range ps {
		if !id.Has(p) {
			return &MissingPermissionError{Permission: p}
		}
	}
	return nil
}

// MissingPermissionError says which permission a call needed. It unwraps to
// [ErrForbidden].
type MissingPermissionError struct{ Permission Permission }

func (e *MissingPermissionError) Error() string {
	return fmt.Sprintf("missing permission %s: ask for a token or key that grants it", e.Permission)
}

// Unwrap returns ErrForbidden.
func (e *MissingPermissionError) Unwrap() error { return ErrForbidden }

// InTeam reports whether the identity is a member of team.
func (id Identity) InTeam(team string) bool { return slices.Contains(id.Teams, team) }

// SessionScope returns the session scope for a session key, or false when
// the key is empty.
func (id Identity) SessionScope(key string) (Scope, bool) {
	if key == "" {
		return Scope{}, false
	}
	return Scope{KindSession, id.User + "/" + key}, true
}

// Visible returns the scopes the identity can read, narrowest first:
// session (when it has a session key), agent (when it names an agent),
// user, each team, org.
func (id Identity) Visible() []Scope {
	out := make([]Scope, 0, 4+len(id.Teams))
	if s, ok := id.SessionScope(id.Session); ok {
		out = append(out, s)
	}
	if id.Agent != "" {
		out = append(out, Scope{KindAgent, id.User + "/" + id.Agent})
	}
	out = append(out, Scope{KindUser, id.User})
	for i, t := range id.Teams {
		if t != "" && !slices.Contains(id.Teams[:i], t) {
			out = append(out, Scope{KindTeam, t})
		}
	}
	return append(out, Scope{KindOrg, ""})
}

// CanSee reports whether s is one of the identity's visible scopes.
func (id Identity) CanSee(s Scope) bool { return slices.Contains(id.Visible(), s) }

// CanWrite reports whether the identity may add, update or delete memories in
// s: s must be visible, memory:write is needed, and team and org scopes need
// memory:share too. The error wraps ErrForbidden.
func (id Identity) CanWrite(s Scope) error {
	if !id.CanSee(s) {
		return fmt.Errorf("%w: scope %s is not one of yours", ErrForbidden, s)
	}
	if s.Kind == KindTeam || s.Kind == KindOrg {
		return id.Require(PermWrite, PermShare)
	}
	return id.Require(PermWrite)
}

// Writable returns the visible scopes the identity may write, narrowest first.
func (id Identity) Writable() []Scope {
	var out []Scope
	for _, s := range id.Visible() {
		if id.CanWrite(s) == nil {
			out = append(out, s)
		}
	}
	return out
}

// Resolve turns a scope as a caller writes it ("session", "agent", "user",
// "team:<id>", "org") into a Scope of this identity. sessionKey is the
// session key to use for "session" (the identity's own when empty). The
// result is one of the scopes the identity would see with that session key:
// naming a team the caller is not in, or a session with no key, is an error
// wrapping ErrBadScope. Callers that pass a session key other than
// id.Session set id.Session to it before using the identity further.
func (id Identity) Resolve(name, sessionKey string) (Scope, error) {
	if sessionKey == "" {
		sessionKey = id.Session
	}
	name = strings.TrimSpace(name)
	kind, arg, hasArg := strings.Cut(name, ":")
	switch Kind(kind) {
	case KindSession:
		if hasArg {
			break
		}
		s, ok := id.SessionScope(sessionKey)
		if !ok {
			return Scope{}, fmt.Errorf("%w: this transport has no session; pass the session argument to name one", ErrBadScope)
		}
		if err := checkID(sessionKey); err != nil {
			return Scope{}, fmt.Errorf("%w: session key: %v", ErrBadScope, err)
		}
		return s, nil
	case KindAgent:
		if hasArg {
			break
		}
		if id.Agent == "" {
			return Scope{}, fmt.Errorf("%w: no agent is configured for this caller, so there is no agent scope; use user", ErrBadScope)
		}
		return Scope{KindAgent, id.User + "/" + id.Agent}, nil
	case KindUser:
		if hasArg {
			break
		}
		return Scope{KindUser, id.User}, nil
	case KindTeam:
		if !hasArg || arg == "" {
			return Scope{}, fmt.Errorf("%w: write a team scope as team:<id>", ErrBadScope)
		}
		if !id.InTeam(arg) {
			return Scope{}, fmt.Errorf("%w: you are not a member of team %q (your teams: %s)", ErrBadScope, arg, teamList(id.Teams))
		}
		return Scope{KindTeam, arg}, nil
	case KindOrg:
		if hasArg {
			break
		}
		return Scope{KindOrg, ""}, nil
	}
	return Scope{}, fmt.Errorf("%w: %q is not a scope; use session, agent, user, team:<id> or org", ErrBadScope, name)
}

func teamList(ts []string) string {
	if len(ts) == 0 {
		return "none"
	}
	return strings.Join(ts, ", ")
}

// TargetKind says what a purge removes.
type TargetKind int

// Purge targets.
const (
	// TargetScope removes every memory of one scope.
	TargetScope TargetKind = iota
	// TargetUser removes every memory one user owns in the org: their user,
	// agent and session scopes (right to erasure). Admin only.
	TargetUser
	// TargetOrg removes every memory of the org. Admin only.
	TargetOrg
)

// Target is what a purge removes.
type Target struct {
	Kind  TargetKind
	Scope Scope  // for TargetScope
	User  string // for TargetUser
}

// String writes the target as a caller names it.
func (t Target) String() string {
	switch t.Kind {
	case TargetUser:
		return "user:" + t.User
	case TargetOrg:
		return "all"
	}
	return t.Scope.String()
}

// ResolveTarget parses a purge target: any scope [Identity.Resolve] accepts,
// "user:<id>" (one user's memories, admin only) or "all" (the whole org,
// admin only), and checks that the identity may purge it. Errors wrap
// ErrBadScope or ErrForbidden.
func (id Identity) ResolveTarget(name, sessionKey string) (Target, error) {
	name = strings.TrimSpace(name)
	var t Target
	switch {
	case name == "all":
		t = Target{Kind: TargetOrg}
	case strings.HasPrefix(name, "user:"):
		u := strings.TrimPrefix(name, "user:")
		if u == "" || checkID(u) != nil {
			return Target{}, fmt.Errorf("%w: write a user purge as user:<id>", ErrBadScope)
		}
		t = Target{Kind: TargetUser, User: u}
	case id.Has(PermAdmin) && strings.HasPrefix(name, "team:") && checkID(strings.TrimPrefix(name, "team:")) == nil && name != "team:":
		// An admin may purge any team of the org, member or not.
		t = Target{Kind: TargetScope, Scope: Scope{KindTeam, strings.TrimPrefix(name, "team:")}}
	default:
		s, err := id.Resolve(name, sessionKey)
		if err != nil {
			return Target{}, err
		}
		t = Target{Kind: TargetScope, Scope: s}
	}
	return t, id.CanPurge(t)
}

// CanPurge reports whether the identity may purge t. Own session, agent and
// user scopes need memory:purge; team and org scopes need memory:purge and
// memory:share; another user's memories, a team one is not in, and the
// whole org need memory:admin.
func (id Identity) CanPurge(t Target) error {
	switch t.Kind {
	case TargetUser:
		if t.User == id.User {
			return id.Require(PermPurge)
		}
		return id.Require(PermAdmin)
	case TargetOrg:
		return id.Require(PermAdmin)
	}
	if t.Scope.Kind == KindTeam && id.Has(PermAdmin) {
		return nil
	}
	if !id.CanSee(t.Scope) {
		return fmt.Errorf("%w: scope %s is not one of yours", ErrForbidden, t.Scope)
	}
	if t.Scope.Kind == KindTeam || t.Scope.Kind == KindOrg {
		return id.Require(PermPurge, PermShare)
	}
	return id.Require(PermPurge)
}

type ctxKey struct{}

// WithIdentity returns a context carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity stored by WithIdentity.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}
