package postgres

// The search statements, for plan tests.
const (
	VectorSearchSQL = vectorSearchSQL
	TextSearchSQL   = textSearchSQL
)
