"""The base class of the errors that mean a user's mistake (a leaf module: it imports nothing).

The command line prints such an error as one line and exits with code 2, never with a traceback; any other
exception is a programming error and keeps its traceback. Each layer defines its own error types (a bad recipe, a
damaged checkpoint, a missing store ...) as subclasses of :class:`UserMistake` and of the builtin type callers
expect (``ValueError``, ``RuntimeError``), so the command line catches them all without importing their modules.
"""

__all__ = ["UserMistake", "HubUnavailable"]


class UserMistake(Exception):
    """A problem the user can fix; its message is one line that says what to do."""


class HubUnavailable(UserMistake, OSError):
    """Pretrained weights (a Hugging Face hub id) that cannot be loaded: offline and not in the local cache, an
    unreachable hub, or a local folder that does not exist. The message is one line naming the recipe key to
    change (a local copy, or ``pretrained=false``). An ``OSError``, as transformers' own loading errors are."""
