"""How to build: the realiser (`builders.realise`), the sandbox, and one module per builder
kind (`builders.registry` imports each when its kind is first built)."""
