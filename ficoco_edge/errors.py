"""Error types the CLI turns into one-line messages with exit code 2."""


class UsageError(ValueError):
    """Bad input from the user: the message says what was wrong and what the valid choices are."""


class UnsupportedModelError(UsageError):
    """The model is not a LLaVA-style model this toolkit knows how to patch."""
