"""The one exception type that reaches the user as a message instead of a traceback."""


class UserError(Exception):
    """A problem with the user's input or files.

    The command-line entry points print ``error: <message>`` on one line to stderr and exit
    with status 2. The message names the problem and the fix.
    """
