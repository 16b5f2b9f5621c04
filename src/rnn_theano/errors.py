"""The exceptions that reach the user as a message instead of a traceback."""


class UserError(Exception):
    """A problem with the user's input or files.

    The command-line entry points print ``error: <message>`` on one line to stderr and exit
    with status 2. The message names the problem and the fix.
    """


class SettingError(UserError, ValueError):
    """A setting with an impossible value, named by its field (``hidden_dim``).

    The library words the rule once; the command line shows it under the flag's name
    (``--hidden-dim``), a recipe file under its key.
    """

    def __init__(self, setting: str, problem: str) -> None:
        self.setting, self.problem = setting, problem
        super().__init__(f"{setting} {problem}")

    def as_flag(self) -> str:
        return f"--{self.setting.replace('_', '-')} {self.problem}"
