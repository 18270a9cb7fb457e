package embed

import "testing"

func TestParseHost(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"127.0.0.1", "http://127.0.0.1:11434"},
		{"localhost:8080", "http://localhost:8080"},
		{"http://example.com", "http://example.com:80"},
		{"https://example.com", "https://example.com:443"},
		{"https://example.com:8443/ollama", "https://example.com:8443/ollama"},
		{"[::1]:11434", "http://[::1]:11434"},
		{"::1", "http://[::1]:11434"},
		{"  http://10.0.0.2:11434  ", "http://10.0.0.2:11434"},
		{"http://bob:pw@10.0.0.2:11434", "http://bob:pw@10.0.0.2:11434"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := parseHost(tt.in)
			if err != nil {
				t.Fatalf("parseHost(%q) = %v", tt.in, err)
			}
			if got := u.String(); got != tt.want {
				t.Errorf("parseHost(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRedactHost(t *testing.T) {
	tests := []struct{ in, want string }{
		{"http://bob:pw@host:1", "http://bob:xxxxx@host:1"},
		{"bob:pw@host", "bob:xxxxx@host"},
		{"host:11434", "host:11434"},
	}
	for _, tt := range tests {
		if got := redactHost(tt.in); got != tt.want {
			t.Errorf("redactHost(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
