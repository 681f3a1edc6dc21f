"""clinfuse flows: Prefect flows and tasks, settings and the `clinfuse` CLI (thin wrappers over the library)."""
