"""The course's instructor tooling (`python -m grader --help`). Defaults the command line shows
live here, so that parsing arguments needs no heavy import (nbgrader, torch, Dask)."""


class GraderError(Exception):
    """A problem the instructor can fix (a missing folder, an unknown assignment, a failed nbgrader step);
    the message says what to do. The grader's functions raise it; only the command line exits on it."""


DEFAULT_MEMORY = "4G"  # autograde: memory limit per submission, its kernel included
DEFAULT_TIMEOUT = 1800  # autograde: CPU-time limit per submission, seconds (wall time: 3x, see grader/sandbox.py)
DEFAULT_REGEXP = r".*/(?P<student_id>[^/_]+)_(?P<file_id>[^/]+)$"  # collect: LMS zip file names
