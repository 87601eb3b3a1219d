"""The `cog` SDK that predictors import, against Cog's."""
