"""The prediction server and its worker."""
