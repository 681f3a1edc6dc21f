"""Rebuilding missing modalities' embeddings: the methods, their registry, method selection."""
