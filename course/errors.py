"""The one exception type the command-line tool turns into a one-line error message."""


class CourseError(Exception):
    """An error whose message, alone on one line, tells the user what went wrong and the fix."""
