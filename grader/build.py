"""`python -m grader build`: regenerate the student versions and the reference solutions.

Both come from nbgrader itself, run on the course folder:
  nbgrader generate_assignment  source/A/ -> notebooks/A/  (solutions and hidden tests removed)
  nbgrader generate_solution    source/A/ -> solutions/A/  (hidden tests removed, executed, outputs kept)
A throw-away gradebook is used, so building never touches the instructor's gradebook.db.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from grader import GraderError


def assignments(course="."):
    """The assignment names: the folders of source/ that hold a notebook, sorted."""
    source = Path(course) / "source"
    return sorted(d.name for d in source.iterdir() if d.is_dir() and any(d.glob("*.ipynb"))) if source.is_dir() else []


def nbgrader(course, *args):
    """Run one nbgrader command in the course folder; stop with its output when it fails."""
    command = [sys.executable, "-m", "nbgrader", *args]
    # The inline backend, whatever the caller's MPLBACKEND says: with any other (e.g. the tests' Agg)
    # the executed solutions would keep no figures. No progress bars: in a published solution they
    # are only widget state (tens of kB per notebook), not results.
    env = tool_env(MPLBACKEND="module://matplotlib_inline.backend_inline", MNISTLAB_QUIET="1")
    # The published solutions are built on the pinned offline data unless the caller asks for another source
    # (MNISTLAB_DATA_SOURCE=download): the same outputs on every machine, and no failed-download warning in them.
    env.setdefault("MNISTLAB_DATA_SOURCE", "offline")
    done = subprocess.run(command, cwd=course, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise GraderError(f"`nbgrader {' '.join(args)}` failed:\n{done.stdout}{done.stderr}")
    return done


def tool_env(**extra):
    """This environment, with the Python's own bin/ first on PATH: nbgrader runs `alembic` from there."""
    env = dict(os.environ, **extra)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def build(course=".", names=None, solutions=True):
    known = assignments(course)
    names = names or known
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise GraderError(f"no assignment {', '.join(unknown)} in {Path(course) / 'source'}; known: {', '.join(known)}")
    with tempfile.TemporaryDirectory() as scratch:
        db = f"sqlite:///{Path(scratch) / 'build-gradebook.db'}"
        for name in names:
            nbgrader(course, "generate_assignment", name, "--force", f"--db={db}")
            print(f"built notebooks/{name}/")
            if solutions:
                nbgrader(course, "generate_solution", name, "--force", f"--db={db}")
                print(f"built solutions/{name}/ (executed)")
