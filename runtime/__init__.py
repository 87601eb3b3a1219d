"""The prediction server: Cog's HTTP API (HTTP/1.1 over h11, trio) over a worker process."""
