"""The worker side of the runtime (stdlib only) and the server's entry point."""
