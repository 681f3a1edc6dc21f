"""The ingest driver: find the source items, hash them, fan them out to worker processes."""
