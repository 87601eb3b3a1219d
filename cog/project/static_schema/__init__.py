"""Cog's build-time schema, as Cog's static generator makes it (pkg/schema in replicate/cog):
the predictor's source is read, never run, and either gives the OpenAPI document that the
image's `run.cog.openapi_schema` label holds, byte for byte, or is refused in Cog's words.

Cog reads the source with tree-sitter; this package reads it with `ast` and the source text,
and follows the same rules, quirks included (what a literal is, which names resolve, which
defaults count), so that a project Cog builds builds here with the same document, and a
project Cog refuses is refused here with the same sentence. Where `ast` cannot follow
tree-sitter (a file with a syntax error, which tree-sitter reads past), it says so.
"""
