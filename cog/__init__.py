"""The Cog SDK that predictors import. Standard library only: it runs in the model's environment.

The predictor API arrives with the runtime issue; `cog.cli` holds the `cog` command.
"""
