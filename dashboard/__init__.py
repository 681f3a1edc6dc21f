"""clinfuse dashboard package."""
