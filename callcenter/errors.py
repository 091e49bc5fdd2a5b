"""
Errors a person running the server must read: each is one line that names
where the problem is and what to do, never a traceback.
"""


class ConfigError(Exception):
    """
    The configuration is wrong.  Holds every problem found, one line each, so
    that a person can fix them all in one go.
    """

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StartupError(Exception):
    """
    The server could not acquire something its configuration names (a port,
    the database).  The message is one line.
    """
