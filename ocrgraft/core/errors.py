"""The one exception type users see: the CLI prints its message as a single line and exits non-zero."""


class OcrgraftError(Exception):
    """A problem with the user's input or a failed check, described in one line."""


class VerificationError(OcrgraftError):
    """A stage's outputs differ from the reference beyond tolerance."""
