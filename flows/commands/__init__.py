"""One module per CLI command; `flows/cli.py` registers them."""
