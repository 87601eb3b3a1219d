"""The builders, the realiser and the sandbox."""
