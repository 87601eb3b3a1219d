"""The `cog` command."""
