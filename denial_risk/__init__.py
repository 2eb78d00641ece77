"""The `denial-risk` command line and the project's settings."""
