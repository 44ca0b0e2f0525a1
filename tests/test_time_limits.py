"""Time limits that do not punish a busy machine (grader/sandbox.py, grader/autograde.py).

- The per-submission limit counts CPU time, which a student's neighbours cannot inflate: a process
  that waits is charged nothing, one that computes is charged what it computes.
- A submission that hit a time limit in the class run is not recorded at once: it is graded again,
  alone, after everyone else, and that grade counts, with a note either way.

The class run's time-out is simulated on one student (a busy machine cannot be made on demand);
the second grading and the recording are the grader's own, on the toy course, in a real sandbox.
"""

import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grader"))
import toycourse  # noqa: E402

from grader import autograde, sandbox  # noqa: E402

pytestmark = pytest.mark.timeout(600)


def test_cpu_time_counts_work_not_waiting():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(2.0)
        spun, slept = (sandbox.cpu_seconds(psutil.Process(p.pid)) for p in (spinner, sleeper))
        assert spun > 0.5, f"a process spinning for 2 s was charged only {spun:.2f} CPU seconds"
        assert slept < 0.3, f"a process sleeping for 2 s was charged {slept:.2f} CPU seconds"
    finally:
        for p in (spinner, sleeper):
            p.kill()
            p.wait()
    assert sandbox.cpu_seconds(Exited(), last=spun) == spun, "an exited process keeps its last reading"


class Exited:
    """What psutil gives for a process that has exited."""

    def cpu_times(self):
        raise psutil.NoSuchProcess(0)


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client

    # Threads in this process, so that the test can stand in for the busy first run; each submission is
    # still graded by the grader's own sandboxed child process.
    with Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        yield c


CALLS, LOCK = [], threading.Lock()  # [student, start, end] of every grading, in the order they started
REAL_GRADE_SUBMISSION = autograde.grade_submission


def graded(job):
    """The grader's own grading of one submission; "unlucky"'s first run is hit by a busy machine.
    (Module level: Dask pickles the task's function by name.)"""
    with LOCK:
        call = [job["student"], time.monotonic(), None]
        CALLS.append(call)
        first = [c[0] for c in CALLS].count(job["student"]) == 1
    result = REAL_GRADE_SUBMISSION(job)
    if job["student"] == "unlucky" and first:
        result = dataclasses.replace(result, cell_errors={"cube": "CellTimeoutError"})
    call[2] = time.monotonic()
    return result


def test_time_limited_submissions_are_graded_again_alone_before_a_score_is_recorded(tmp_path, client, monkeypatch):
    course = toycourse.make_course(tmp_path / "course", cell_timeout=5)
    for student, variant in [("unlucky", "correct"), ("honest", "correct"), ("loop", "loop"), ("wrong", "wrong")]:
        toycourse.submit(course, student, variant)
    recorded, real_record = [], autograde.record

    def record(cd, result):
        recorded.append(result.student)
        return real_record(cd, result)

    CALLS.clear()
    monkeypatch.setattr(autograde, "grade_submission", graded)
    monkeypatch.setattr(autograde, "record", record)
    results = autograde.autograde(toycourse.ASSIGNMENT, course, client=client, memory="400M", timeout=120, progress=False)
    calls = list(CALLS)

    students = [c[0] for c in calls]
    assert sorted(students) == ["honest", "loop", "loop", "unlucky", "unlucky", "wrong"], students
    assert sorted(recorded) == ["honest", "loop", "unlucky", "wrong"], "every submission is recorded once"
    # The second gradings come after every first one has finished, one at a time.
    firsts_done = max(end for student, start, end in calls[:4])
    again = calls[4:]
    assert sorted(c[0] for c in again) == ["loop", "unlucky"]
    assert again[0][1] >= firsts_done and again[1][1] >= again[0][2], f"not graded alone: {calls}"
    assert recorded[-2:] == [c[0] for c in again], "a time-limited submission is recorded only after its second grading"

    assert results["unlucky"].score == results["honest"].score == results["honest"].max_score
    assert "graded again alone" in results["unlucky"].cell_notes["time-limit"]
    assert results["loop"].cell_errors["cube"] == "CellTimeoutError"
    assert "twice" in results["loop"].cell_notes["cube"] and results["loop"].score == results["wrong"].score
    assert "time-limit" not in (results["honest"].cell_notes or {})
