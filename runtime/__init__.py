"""The prediction server: Cog's HTTP API (hypercorn, trio) over a worker process."""
