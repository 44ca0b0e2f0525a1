"""The course's instructor tooling (`python -m grader --help`). Defaults the command line shows
live here, so that parsing arguments needs no heavy import (nbgrader, torch, Dask)."""

import importlib.machinery
import sys


class GraderError(Exception):
    """A problem the instructor can fix (a missing folder, an unknown assignment, a failed nbgrader step);
    the message says what to do. The grader's functions raise it; only the command line exits on it."""


DEFAULT_MEMORY = "4G"  # autograde: memory limit per submission, its kernel included
DEFAULT_TIMEOUT = 1800  # autograde: CPU-time limit per submission, seconds (wall time: 3x, see grader/sandbox.py)
DEFAULT_REGEXP = r".*/(?P<student_id>[^/_]+)_(?P<file_id>[^/]+)$"  # collect: LMS zip file names


class _NoIriParser:
    """jsonschema (which nbformat imports in every grader process: the coordinator, each Dask worker, each
    zygote) imports rfc3987_syntax when it is installed, only to check the "iri" string format; that module
    builds a parser when imported: 0.8 s of CPU per process, more than the rest of nbgrader's imports together.
    Nothing here checks that format (nbformat's schemas have none), so jsonschema is imported without it:
    this finder runs jsonschema._format with rfc3987_syntax unavailable, and nothing else. Whoever imports
    rfc3987_syntax itself still gets it."""

    NAME, SKIPPED = "jsonschema._format", "rfc3987_syntax"

    def find_spec(self, name, path=None, target=None):
        if name != self.NAME or self.SKIPPED in sys.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            sys.modules[self.SKIPPED] = None  # (an import of it raises ImportError, which jsonschema expects)
            try:
                run(module)
            finally:
                if sys.modules.get(self.SKIPPED, 0) is None:
                    del sys.modules[self.SKIPPED]

        spec.loader.exec_module = exec_module
        return spec


if "jsonschema._format" not in sys.modules and not any(isinstance(f, _NoIriParser) for f in sys.meta_path):
    sys.meta_path.insert(0, _NoIriParser())
