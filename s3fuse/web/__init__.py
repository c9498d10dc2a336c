"""The status page and `/metrics`: a small HTTP server on the daemon's own trio loop."""
