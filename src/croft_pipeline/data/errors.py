"""The error a data rule raises; defined here, below ``validation``, so both layers can raise it."""


class DataValidationError(RuntimeError):
    """The data breaks a rule (a GX expectation, one label per file): the message names the
    rule and the offending files or rows."""
