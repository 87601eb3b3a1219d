"""The prediction server (quart-trio on hypercorn). Arrives with the runtime issue."""
