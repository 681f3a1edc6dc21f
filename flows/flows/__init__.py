"""The Prefect flows, one per stage, and the thin tasks that wrap the library's stage functions."""
