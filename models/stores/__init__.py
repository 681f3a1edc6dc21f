"""What the stages persist: the embedding store and the batch predictions store."""
