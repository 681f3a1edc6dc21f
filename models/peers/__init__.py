"""Published peer methods, reimplemented on this platform's fixed per-modality embeddings for a like-for-like comparison."""
