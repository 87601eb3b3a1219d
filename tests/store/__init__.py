"""The store, its archives, registry transport and binary caches."""
