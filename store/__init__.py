"""The content-addressed store: paths, canonical archives, metadata, locks, roots, gc, verify."""
