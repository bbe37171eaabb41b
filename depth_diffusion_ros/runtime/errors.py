"""The error every model runner raises when it cannot run."""
from __future__ import annotations


class BackendError(RuntimeError):
    """A backend cannot run: missing, unreadable or mismatched model/engine file, a runtime that
    is not installed, an input the compiled graph cannot take.

    The message names the file (when there is one) and what differs.
    """
