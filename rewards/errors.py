"""Errors raised by the reward package.

Only malformed *inputs we control* (dataset rows, line tables) raise; a model
response, however broken, is scored, never raised on.
"""


class RowError(ValueError):
    """A dataset row or its line table cannot be scored (missing/invalid field)."""
