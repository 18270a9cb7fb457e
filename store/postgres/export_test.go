package postgres

// The search and duplicate statements, for plan tests.
var (
	VectorSearchSQL = vectorSearchSQL
	DupVectorSQL    = dupVectorSQL
)

// TextSearchSQL is the full-text half of a search, for plan tests.
const TextSearchSQL = textSearchSQL
