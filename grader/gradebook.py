"""The gradebook's database, for the grader (grader/course.py writes grades through it): which driver a URL
needs (and the command that installs it), a URL fit to show, nbgrader's Gradebook opened quickly, and a
write tried again when another coordinator writes the same gradebook at the same moment.

  database_url  the URL with its driver pinned (postgresql:// -> psycopg 3), or a GraderError naming the
                install command when the driver is missing
  gradebook     nbgrader's Gradebook on that URL (its schema version read in-process, not by `alembic heads`)
  retried       one write, tried up to WRITE_TRIES times against a duplicate key, a lock or a deadlock
"""

import contextlib
import logging
import os
import random
import re
import sys
import time
import warnings
from pathlib import Path

from grader import GraderError

WRITE_TRIES = 6  # a gradebook write that meets another writer (a duplicate key, a lock, a deadlock) is tried again
log = logging.getLogger("grader.gradebook")
# The pip package of each database driver SQLAlchemy may ask for (the module it imports -> what to install).
DRIVERS = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "pymysql": "pymysql",
           "MySQLdb": "mysqlclient", "pg8000": "pg8000", "asyncpg": "asyncpg"}


def database_url(url):
    """The gradebook URL as SQLAlchemy will use it, checked: its database driver must be installed.

    postgresql://... names no driver: SQLAlchemy 2.0 would pick psycopg2, 2.1 psycopg (3). It is made
    postgresql+psycopg://..., the driver this package installs (pyproject.toml), whatever the version."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise GraderError(f"cannot read the gradebook URL {url!r}: {error} (e.g. sqlite:///gradebook.db or "
                          "postgresql://user@host/course)") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
        url = parsed.render_as_string(hide_password=False)
    try:
        dialect = parsed.get_dialect()
        (getattr(dialect, "import_dbapi", None) or dialect.dbapi)()
    except NoSuchModuleError:
        raise GraderError(f"the gradebook URL {shown(url)} names a database SQLAlchemy does not know "
                          f"({parsed.drivername}): use sqlite:///PATH or postgresql://user@host/course") from None
    except ImportError as error:
        module = (getattr(error, "name", None) or str(error)).split(".")[0]
        package = DRIVERS.get(module, module)
        raise GraderError(f"the gradebook {shown(url)} needs the database driver {module!r}, which is not installed "
                          f"in this Python: install it with\n    {sys.executable} -m pip install '{package}'\n"
                          "(`pip install -e .` in the course checkout installs psycopg, the PostgreSQL driver)") from None
    return url


def shown(url):
    """A gradebook URL for messages: without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(an unreadable URL)"


def alembic_head():
    """The revision nbgrader stamps into a new gradebook, read in this process.

    nbgrader's own get_alembic_version runs the `alembic heads` command for every gradebook it creates: a new
    Python process, 1-2 s each, and autograde creates two (the template, and the course's gradebook on a first
    run). The revision is the head of nbgrader's migration scripts: the one revision no other script names as
    its `down_revision`, read from the scripts' text here in milliseconds (importing alembic to ask it takes
    half a second). Scripts laid out otherwise (several heads, branches): alembic's ScriptDirectory decides."""
    global _alembic_head
    if _alembic_head is None:
        import nbgrader.api

        scripts = os.path.join(os.path.dirname(nbgrader.api.__file__), "alembic")
        _alembic_head = head_in_text(Path(scripts, "versions").glob("*.py"))
        if _alembic_head is None:
            from alembic.script import ScriptDirectory

            _alembic_head = ScriptDirectory(scripts).get_current_head()
    return _alembic_head


def head_in_text(scripts):
    """The head revision of alembic migration scripts, from their `revision = '...'` and `down_revision = '...'`
    lines; None unless that is one revision and each script names one revision and at most one down_revision."""
    revisions, parents = set(), set()
    for script in scripts:
        text = script.read_text()
        found = re.findall(r"^revision\s*=\s*['\"](\w+)['\"]\s*$", text, re.M)
        down = re.findall(r"^down_revision\s*=\s*(?:None|['\"](\w+)['\"])\s*$", text, re.M)
        if len(found) != 1 or len(down) != 1:
            return None
        revisions.add(found[0])
        parents.update(d for d in down if d)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


_alembic_head = None


def quick_alembic_version():
    """Make nbgrader stamp new gradebooks with alembic_head (the same revision as `alembic heads` prints, without
    the process); if the scripts cannot be read here, nbgrader's own way stays."""
    import nbgrader.api

    if getattr(nbgrader.api.get_alembic_version, "__module__", None) == __name__:
        return
    try:
        alembic_head()
    except Exception:  # (an nbgrader laid out otherwise: its slow way still works)
        return
    nbgrader.api.get_alembic_version = alembic_head


@contextlib.contextmanager
def gradebook(url, course_id):
    """nbgrader's Gradebook on `url`, closed afterwards with its connections (one engine per Gradebook:
    a coordinator that writes thousands of submissions would otherwise keep a connection open for each)."""
    from nbgrader.api import Gradebook

    quick_alembic_version()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's SAWarnings about nbgrader's own session use
        gb = Gradebook(url, course_id)
        try:
            yield gb
        finally:
            gb.close()
            gb.engine.dispose()


class QuietRollbacks(logging.Filter):
    """nbgrader logs a traceback for each write it rolls back; the grader retries those (see record)."""

    def filter(self, entry):
        return not str(entry.msg).startswith("Rolling back session due to database error")


def retried(what, url, write):
    """write(), tried again (WRITE_TRIES in all, after a short random pause) when it meets another writer:
    a duplicate key of a row created meanwhile, a locked SQLite file, a PostgreSQL deadlock. Each try
    opens its own session. Raises GraderError, saying `what` could not be written, if the last try fails."""
    from nbgrader.api import InvalidEntry
    from sqlalchemy.exc import DBAPIError

    nbgrader_log = logging.getLogger("tornado.application")  # nbgrader's app_log
    quiet = QuietRollbacks()
    nbgrader_log.addFilter(quiet)
    try:
        for attempt in range(1, WRITE_TRIES + 1):
            try:
                return write()
            except (InvalidEntry, DBAPIError) as error:
                first_line = (str(error).strip().splitlines() or [""])[0][:300]
                if attempt == WRITE_TRIES:
                    raise GraderError(f"could not write {what} into the gradebook {shown(url)} ({WRITE_TRIES} tries): "
                                      f"{type(error).__name__}: {first_line}") from error
                log.info("gradebook write of %s met another writer (try %d): %s: %s", what, attempt,
                         type(error).__name__, first_line)
                time.sleep(random.uniform(0.02, 0.1) * 2 ** attempt)
    finally:
        nbgrader_log.removeFilter(quiet)
