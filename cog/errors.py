"""The errors Cog's SDK names, kept for models that import or catch them."""


class CogError(Exception):
    """Base class of Cog's errors."""


class ConfigDoesNotExist(CogError):
    """There is no cog.yaml."""


class PredictorNotSet(CogError):
    """cog.yaml names no predictor where one is needed."""
