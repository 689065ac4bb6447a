"""Personal concepts: the store, their descriptions (speaker + reference game), retrieval embeddings,
two-stage auto-tagging, and questions about the library."""
