"""The lab's one error type: a message for the user, never a traceback."""


class LabError(Exception):
    """A lab operation failed; str(error) is the user-facing message."""
