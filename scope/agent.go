package scope

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"reflect"
	"slices"
	"strings"

	"github.com/scopemem/scopemem/internal/jsonscan"
)

// ErrBadAgentConfig is wrapped by every error [AgentConfig.Identity] and
// [LoadAgentConfigFile] return. A default scope that does not resolve also
// wraps [ErrBadScope]; one the permissions do not let the caller write also
// wraps [ErrForbidden].
var ErrBadAgentConfig = errors.New("invalid agent config")

// DefaultOrg is the org of a stdio caller whose agent config names none.
const DefaultOrg = "local"

// fallbackUser is the user when the config names none and the OS user name
// is unusable.
const fallbackUser = "local"

// AgentConfig is the identity of a stdio caller, as the user configured it
// with flags, environment variables or a config file ([LoadAgentConfigFile]).
// A stdio caller is trusted: nothing here is verified, only checked for
// consistency. The zero value is a valid config: org "local", the OS user,
// every permission, default scope "user".
type AgentConfig struct {
	// Org is the org id; empty means DefaultOrg.
	Org string `json:"org,omitempty"`
	// User is the user id; empty means the OS user name (characters ids may
	// not hold replaced by '_'), or "local" when there is none.
	User string `json:"user,omitempty"`
	// Teams are the teams the user belongs to. Blank entries are dropped and
	// duplicates removed.
	Teams []string `json:"teams,omitempty"`
	// Agent names the agent, giving it an agent scope; empty means none.
	Agent string `json:"agent,omitempty"`
	// DefaultScope is where writes go when a call names no scope: session,
	// agent, user, team:<id> or org. Empty means "user".
	DefaultScope string `json:"default_scope,omitempty"`
	// Permissions narrows what the caller may do; empty means all of
	// [AllPermissions].
	Permissions []Permission `json:"permissions,omitempty"`
}

// DefaultScopeName returns the scope writes default to: DefaultScope, or
// "user" when it is empty. [AgentConfig.Identity] has checked that it
// resolves.
func (c AgentConfig) DefaultScopeName() string {
	if s := strings.TrimSpace(c.DefaultScope); s != "" {
		return s
	}
	return string(KindUser)
}

// Identity checks the config and returns the identity it describes, with
// Session set to sessionKey (one key per stdio process). Bad ids, unknown
// permissions and a default scope the identity cannot write are errors
// wrapping [ErrBadAgentConfig]; a default scope that does not resolve also
// wraps [ErrBadScope], one the permissions do not let the caller write (when
// it may write at all) also wraps [ErrForbidden].
func (c AgentConfig) Identity(sessionKey string) (Identity, error) {
	id, err := c.identity(sessionKey)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrBadAgentConfig, err)
	}
	return id, nil
}

// identity is Identity without the ErrBadAgentConfig prefix.
func (c AgentConfig) identity(sessionKey string) (Identity, error) {
	id := Identity{
		Org:     strings.TrimSpace(c.Org),
		User:    strings.TrimSpace(c.User),
		Agent:   strings.TrimSpace(c.Agent),
		Session: sessionKey,
	}
	if id.Org == "" {
		id.Org = DefaultOrg
	}
	if id.User == "" {
		id.User = osUser()
	}
	for _, f := range [...]struct{ name, v string }{{"org", id.Org}, {"user", id.User}, {"agent", id.Agent}, {"session key", sessionKey}} {
		if err := checkID(f.v); err != nil {
			return Identity{}, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	for _, t := range c.Teams {
		t = strings.TrimSpace(t)
		if t == "" || slices.Contains(id.Teams, t) {
			continue
		}
		if err := checkID(t); err != nil {
			return Identity{}, fmt.Errorf("team: %w", err)
		}
		id.Teams = append(id.Teams, t)
	}
	if len(c.Permissions) == 0 {
		id.Permissions = slices.Clone(AllPermissions)
	}
	for _, p := range c.Permissions {
		p = Permission(strings.TrimSpace(string(p)))
		if !slices.Contains(AllPermissions, p) {
			return Identity{}, fmt.Errorf("unknown permission %q (known: memory:read, memory:write, memory:share, memory:purge, memory:admin)", p)
		}
		if !slices.Contains(id.Permissions, p) {
			id.Permissions = append(id.Permissions, p)
		}
	}
	if err := id.Validate(); err != nil {
		return Identity{}, err
	}
	s, err := id.Resolve(c.DefaultScopeName(), sessionKey)
	if err != nil {
		return Identity{}, fmt.Errorf("default scope: %w", err)
	}
	if id.Has(PermWrite) {
		if err := id.CanWrite(s); err != nil {
			return Identity{}, fmt.Errorf("default scope %s is not writable with these permissions: %w", s, err)
		}
	}
	return id, nil
}

// osUser returns the current OS user name made fit for an id, or "local".
func osUser() string {
	name := os.Getenv("USER")
	if name == "" {
		name = os.Getenv("USERNAME")
	}
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	return sanitizeID(name)
}

// sanitizeID turns an OS user name into an id: the part after a Windows
// domain ("DOMAIN\user"), with '/', ':' and control characters replaced by
// '_'. It returns "local" for a name with nothing left.
func sanitizeID(name string) string {
	if i := strings.LastIndexByte(name, '\\'); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if r == '/' || r == ':' || r < 0x20 || r == 0x7f || r == '\uFFFD' {
			return '_'
		}
		return r
	}, strings.TrimSpace(name))
	if strings.Trim(name, "_") == "" || len(name) > 256 {
		return fallbackUser
	}
	return name
}

// maxAgentConfigBytes bounds an agent config file.
const maxAgentConfigBytes = 1 << 20

// LoadAgentConfigFile reads an agent config from a JSON file such as
//
//	{"org": "acme", "user": "alice", "teams": ["api"], "agent": "coder",
//	 "default_scope": "user", "permissions": ["memory:read", "memory:write"]}
//
// Unknown fields are rejected. The config is checked as
// [AgentConfig.Identity] would check it; errors name the file and, for
// syntax and type errors, the line.
func LoadAgentConfigFile(path string) (AgentConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return AgentConfig{}, fmt.Errorf("%w: %w", ErrBadAgentConfig, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAgentConfigBytes+1))
	if err != nil {
		return AgentConfig{}, fmt.Errorf("%w: %s: %w", ErrBadAgentConfig, path, err)
	}
	if len(data) > maxAgentConfigBytes {
		return AgentConfig{}, fmt.Errorf("%w: %s is larger than 1 MiB", ErrBadAgentConfig, path)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return AgentConfig{}, fmt.Errorf("%w: %s is empty; write a JSON object such as {\"org\": \"acme\", \"user\": \"alice\"}", ErrBadAgentConfig, path)
	}
	// Names are matched exactly: encoding/json alone would take "Org"
	// for org, and of "org" and "Org" keep the later.
	var ne *jsonscan.NameError
	if err := jsonscan.ExactNames(data, reflect.TypeFor[AgentConfig]()); errors.As(err, &ne) {
		return AgentConfig{}, fmt.Errorf("%w: %s: unknown field %q; known fields (lower case): %s", ErrBadAgentConfig, path, ne.Name, agentFields)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c AgentConfig
	if err := dec.Decode(&c); err != nil {
		return AgentConfig{}, fmt.Errorf("%w: %s: %s", ErrBadAgentConfig, path, describeJSONError(data, err))
	}
	if dec.More() {
		return AgentConfig{}, fmt.Errorf("%w: %s: line %d: unexpected data after the JSON object", ErrBadAgentConfig, path, lineOf(data, dec.InputOffset()))
	}
	// "session" as default scope needs the per-process key, which every
	// stdio process has; check the rest with a stand-in.
	if _, err := c.identity("config-check"); err != nil {
		return AgentConfig{}, fmt.Errorf("%w: %s: %w", ErrBadAgentConfig, path, err)
	}
	return c, nil
}

// agentFields lists the members of an agent config.
const agentFields = "org, user, teams, agent, default_scope, permissions"

// describeJSONError says what is wrong with a JSON document and where.
func describeJSONError(data []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("line %d: invalid JSON: %v", lineOf(data, syn.Offset), syn)
	case errors.As(err, &typ):
		want := typ.Type.String()
		switch typ.Field {
		case "teams", "permissions":
			want = "an array of strings"
		case "":
			want = "a JSON object"
		default:
			if typ.Type.Kind() == reflect.String {
				want = "a string"
			}
		}
		field := typ.Field
		if field == "" {
			field = "the config"
		}
		return fmt.Sprintf("line %d: %s must be %s, not a JSON %s", lineOf(data, typ.Offset), field, want, typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends too early (missing a closing brace or quote?)"
	}
	// DisallowUnknownFields reports `json: unknown field "x"`.
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Sprintf("unknown field %s; known fields (lower case): %s", f, agentFields)
	}
	return err.Error()
}

// lineOf returns the 1-based line holding byte offset off.
func lineOf(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}
