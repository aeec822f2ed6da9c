"""Errors that reach the user as one line naming the cause and the fix, with a meaningful exit status."""


class TorchdevError(Exception):
    """A failure the user can act on; `str()` is the whole one-line message."""

    exit_status = 1


class ConfigError(TorchdevError):
    """images.yaml or an overlay is unusable (exit status 2, like a usage error)."""

    exit_status = 2


class UsageError(TorchdevError):
    """The command line asks for something that does not exist (an unknown variant, say)."""

    exit_status = 2
