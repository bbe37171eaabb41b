"""The error type for bad input arriving over ROS."""
from __future__ import annotations


class InputError(ValueError):
    """A message cannot be used: unsupported encoding, mismatched sizes, malformed layout...

    The message (``str(err)``) names the problem in words a user can act on. ``reason`` is a
    short machine-readable key (``"bad_encoding"``, ``"size_mismatch"``, ...) that nodes use as
    the name of the drop counter they increment and publish in their diagnostics.
    """

    def __init__(self, message: str, reason: str = "bad_input") -> None:
        super().__init__(message)
        self.reason = reason
