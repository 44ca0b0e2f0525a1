"""A PostgreSQL gradebook for real: a server started here, the toy class graded into it by two coordinators
at once, and every grade compared with an SQLite run (tests/fixtures/grader/toycourse.py).

The server is Debian's `postgresql` (`make test` installs it: the Makefile's SYSTEM_PACKAGES): initdb and
pg_ctl in a temporary folder, listening on 127.0.0.1 only (a free port, no Unix socket), run as `nobody`
when the tests run as root (PostgreSQL refuses root). It is stopped, and its folder removed, whatever happens.
Without the binaries the tests fail with the command that installs them: they are never skipped.
"""

import glob
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grader"))
import toycourse  # noqa: E402

from grader import GraderError, autograde, course  # noqa: E402
from grader.build import tool_env  # noqa: E402

pytestmark = pytest.mark.timeout(300)
A = toycourse.ASSIGNMENT
INSTALL = "sudo apt-get install -y postgresql"


def server_program(name):
    """initdb or pg_ctl: on PATH, or where Debian keeps them (/usr/lib/postgresql/<version>/bin)."""
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                                         key=lambda p: [int(n) for n in re.findall(r"\d+", p)])
    if not found:
        pytest.fail(f"PostgreSQL's server ({name}) is not installed, and these tests need one. Install it with\n"
                    f"    {INSTALL}\n(`make test` installs it: the Makefile's SYSTEM_PACKAGES)", pytrace=False)
    return found if isinstance(found, str) else found[-1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server():
    """A throw-away PostgreSQL server: yields url(database) -> the URL of a new, empty database on it."""
    initdb, pg_ctl = server_program("initdb"), server_program("pg_ctl")
    folder = Path(tempfile.mkdtemp(prefix="mnistlab-postgres-"))  # not under pytest's root-only tmp folder
    as_user = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: as nobody, in a folder nobody owns
        nobody = pwd.getpwnam("nobody")
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        as_user = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    password = secrets.token_hex(16)
    data = folder / "data"

    def run(*command):
        done = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120, cwd=folder,
                              env=dict(os.environ, HOME=str(folder), LC_ALL="C"))
        assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}{done.stderr}"

    try:
        (folder / "password").write_text(password)
        if as_user:
            os.chown(folder / "password", nobody.pw_uid, nobody.pw_gid)
        run(initdb, "-D", str(data), "-U", "grader", f"--pwfile={folder / 'password'}", "--auth=scram-sha-256",
            "-E", "UTF8", "--no-locale", "--no-sync")
        for attempt in range(3):  # the free port may be taken in between: another one then
            port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            try:
                run(pg_ctl, "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60", "-o", options, "start")
                break
            except AssertionError:
                if attempt == 2:
                    raise AssertionError((folder / "server.log").read_text()) from None

        def url(database):
            import psycopg

            with psycopg.connect(host="127.0.0.1", port=port, user="grader", password=password, dbname="postgres",
                                 autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{database}"')
            return f"postgresql://grader:{password}@127.0.0.1:{port}/{database}"

        yield url
    finally:
        if (data / "postmaster.pid").exists():
            stopped = subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop"],
                                     capture_output=True, cwd=folder)
            if stopped.returncode != 0 and (data / "postmaster.pid").exists():
                os.kill(int((data / "postmaster.pid").read_text().split()[0]), 9)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def database():
    with postgres_server() as url:
        yield url


def grades(cd):
    """{student: ({grade cell: score}, {automatic comments})} of the assignment, from the gradebook cd uses."""
    from nbgrader.api import Gradebook

    with Gradebook(cd.db_url, cd.course_id) as gb:
        return {s.student.id: ({g.name: g.score for nb in s.notebooks for g in nb.grades},
                               sorted(c.auto_comment or "" for nb in s.notebooks for c in nb.comments))
                for s in gb.find_assignment(A).submissions}


def test_a_missing_driver_names_the_command_that_installs_it(tmp_path, monkeypatch):
    """postgresql:// means psycopg (3), whatever SQLAlchemy's default; without it, the exact pip command."""
    toycourse.make_course(tmp_path)
    cd, _ = course.course_directory(tmp_path, "postgresql://someone@db.example/course")
    assert cd.db_url == "postgresql+psycopg://someone@db.example/course"
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` fails as if it were not installed
    with pytest.raises(GraderError) as error:
        course.course_directory(tmp_path, "postgresql://someone:secret@db.example/course")
    assert f"{sys.executable} -m pip install 'psycopg[binary]'" in str(error.value)
    assert "secret" not in str(error.value)


RECORD_RACE = r"""
import json, logging, sys, time
from pathlib import Path
from grader import course, gradebook
from grader.results import SubmissionResult

url, root, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
cd, config = course.course_directory(root, url)
retries = []
handler = logging.Handler()
handler.emit = lambda entry: retries.append(entry.getMessage())
gradebook.log.addHandler(handler)
gradebook.log.setLevel(logging.INFO)
course.template_gradebook(cd, config, "toy")  # both add the assignment to the new gradebook at once, too
(root / f"ready-{sys.argv[4]}").touch()
deadline = time.time() + 120
while len(list(root.glob("ready-*"))) < 2:  # then both write the same new students at the same time
    if time.time() > deadline:
        sys.exit("the other writer never got ready")
    time.sleep(0.001)

def result(i):
    grade = lambda name, score: {"name": name, "auto_score": score, "needs_manual_grade": False}
    notebook = {"name": "toy", "late_submission_penalty": None, "comments": [],
                "grades": [grade("test_square", float(i % 3)), grade("test_cube", 2.0 * (i % 2))]}
    failed = i % 10 == 0
    return SubmissionResult(student=f"s{i:03d}", assignment="toy", status="failed" if failed else "graded",
                            reason="a reason" if failed else None, hash="h", files={} if failed else {"toy.ipynb": b"{}"},
                            scores=None if failed else {"timestamp": None, "notebooks": [notebook]})

errors, start = [], time.time()
for i in range(n):
    try:
        course.record(cd, result(i))
    except Exception as error:
        errors.append(f"{type(error).__name__}: {error}"[:300])
print(json.dumps({"errors": errors, "retries": len(retries), "seconds": round(time.time() - start, 1)}))
"""


def expected_grades(i):
    if i % 10 == 0:
        return {"test_square": 0.0, "test_cube": 0.0}
    return {"test_square": float(i % 3), "test_cube": 2.0 * (i % 2)}


def test_record_from_two_processes_at_once_loses_nothing(database, tmp_path):
    """Two processes record the same 100 new students into one new gradebook at the same moment (the
    race that raised UniqueViolation on "student_pkey" and aborted the batch): no call fails, and the
    gradebook and autograded/ hold every student's grades once."""
    n = 100
    root = toycourse.make_course(tmp_path / "course")
    url = database("record_race")
    script = tmp_path / "record_race.py"
    script.write_text(RECORD_RACE)
    writers = [subprocess.Popen([sys.executable, str(script), url, str(root), str(n), str(k)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=tool_env(), cwd=tmp_path) for k in range(2)]
    reports = []
    for writer in writers:
        out, err = writer.communicate(timeout=240)
        assert writer.returncode == 0, out + err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    print("record race:", reports)
    assert [r["errors"] for r in reports] == [[], []]

    cd, _ = course.course_directory(root, url)
    held = grades(cd)
    assert {s: g for s, (g, _) in held.items()} == {f"s{i:03d}": expected_grades(i) for i in range(n)}
    for i in range(n):
        record = course.read_record(cd, A, f"s{i:03d}")
        assert record.status == ("failed" if i % 10 == 0 else "graded")
        assert record.auto_scores == {f"toy/{cell}": score for cell, score in expected_grades(i).items()}
    assert not list(root.glob("autograded/*/.*")), "a staging folder was left behind"
    assert course.graded_in_gradebook(cd, A).keys() == held.keys()


def coordinator(root, db):
    return subprocess.Popen([sys.executable, "-m", "grader", "autograde", A, "--course", str(root), "--db", db,
                             "--workers", "1", "--memory", "400M", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=tool_env())


def test_two_coordinators_grade_a_class_into_postgres_as_sqlite_does(database, tmp_path):
    """The toy class (correct, wrong, blank, a crash) graded by two `autograde --db postgresql://...`
    coordinators started at once on one new database and course folder: both finish, and every grade
    and comment equals that of a run into SQLite. A third run skips all: PostgreSQL holds the grades."""
    students = ("correct", "wrong", "blank", "crash")
    lite = toycourse.make_course(tmp_path / "sqlite")
    for student in students:
        toycourse.submit(lite, student, student)
    shared = tmp_path / "postgres"
    shutil.copytree(lite, shared)
    url = database("class")
    start = time.time()
    both = [coordinator(shared, url) for _ in range(2)]
    plain = coordinator(lite, f"sqlite:///{lite / 'gradebook.db'}")
    outputs = [process.communicate(timeout=280)[0] for process in [*both, plain]]
    print(f"three coordinators: {time.time() - start:.0f} s")
    for process, output in zip([*both, plain], outputs):
        assert process.returncode == 0, output
        assert "NOT RECORDED" not in output, output
        assert "4 of 4 submission(s) graded" not in output  # (the crash is not graded)
        assert "3 of 4 submission(s) graded; 1 could not be" in output, output

    in_postgres, in_sqlite = grades(course.course_directory(shared, url)[0]), grades(course.course_directory(lite)[0])
    assert set(in_sqlite) == set(students)
    assert in_postgres == in_sqlite
    assert in_sqlite["wrong"][0] == {"test_square": 0.0, "test_cube": 2.0}

    again = autograde.autograde_many([A], shared, db=url, progress=False)
    assert {s for _, s in again} == set(students)
    assert all(course.read_record(course.course_directory(shared)[0], A, s) == again[A, s] for s in students)
    assert grades(course.course_directory(shared, url)[0]) == in_sqlite
