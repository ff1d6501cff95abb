"""The error type for mistakes a user can fix: bad arguments, unreadable data, unknown models."""


class UsageError(Exception):
    """A problem with the user's input. The message names the problem and the fix in one line.

    Entry points turn it into `<prog>: error: <message>` on stderr and exit code 2.
    """
