"""cog.yaml, cog.lock, channels and the derivation model."""
