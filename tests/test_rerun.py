"""Re-runs: the gradebook in use is the truth (tests/fixtures/grader/toycourse.py, SQLite gradebooks).

A submission is skipped only when its files are unchanged AND the gradebook in use holds the grades its
record (autograded/<s>/<a>/.grader.json) says were written; and a result that cannot be recorded is
reported for its submission while the rest of the batch is recorded.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grader"))
import gradebooks  # noqa: E402
import toycourse  # noqa: E402

from grader.cluster import start_client  # noqa: E402
from grader import GraderError, autograde, course  # noqa: E402
from grader.results import SubmissionResult  # noqa: E402

pytestmark = pytest.mark.timeout(300)
A = toycourse.ASSIGNMENT


@pytest.fixture(scope="module")
def client():
    c, cluster = start_client(workers=1)
    with c:
        yield c
    cluster.close()


def grades(root, db=None):
    return gradebooks.scores(root, A, db)


def run(root, client, db=None, **options):
    results = autograde.autograde_many([A], root, db=db, client=client, memory="400M", progress=False, **options)
    return {student: summary for (_, student), summary in results.items()}


def test_another_gradebook_grades_everything_again(tmp_path, client, capsys):
    """Graded into the course's gradebook, then run with --db on an empty one: every submission is graded
    again (their records alone skip nothing), with the same grades; then a run skips them all, and one
    submission removed from the gradebook is the only one graded again."""
    root = toycourse.make_course(tmp_path / "course")
    for student in ("correct", "wrong", "blank"):
        toycourse.submit(root, student, student)
    first = run(root, client)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    capsys.readouterr()
    second = run(root, client, db=other)
    out = capsys.readouterr().out
    assert "already graded" not in out
    assert "3 submission(s) of toy graded before but not (or not so) in the gradebook" in out
    assert {s: r.score for s, r in second.items()} == {s: r.score for s, r in first.items()} == {
        "correct": 4.0, "wrong": 2.0, "blank": 0.0}
    assert all(second[s].graded_at >= first[s].graded_at for s in first)
    assert grades(root, other) == grades(root) and set(grades(root)) == set(first)

    assert run(root, client, db=other) == second  # all held there now: nothing graded again
    assert "3 submission(s) already graded and unchanged: skipped" in capsys.readouterr().out

    from nbgrader.api import Gradebook

    with Gradebook(course.course_directory(root, other)[0].db_url, "toycourse") as gb:
        gb.remove_submission(A, "wrong")  # (say, an instructor deleted it)
    third = run(root, client, db=other)
    out = capsys.readouterr().out
    assert "2 submission(s) already graded and unchanged: skipped" in out
    assert "1 submission(s) of toy graded before but not (or not so)" in out
    assert third["wrong"].graded_at >= second["wrong"].graded_at and third["wrong"].score == 2.0
    assert {s: third[s] for s in ("correct", "blank")} == {s: second[s] for s in ("correct", "blank")}
    assert grades(root, other) == grades(root)


def test_holds_compares_every_automatic_score():
    record = SubmissionResult("s", A, auto_scores={"toy/test_square": 2.0, "toy/test_cube": None})
    assert course.holds(record, {"toy/test_square": 2.0, "toy/test_cube": None})
    assert not course.holds(record, {"toy/test_square": 0.0, "toy/test_cube": None})  # changed since
    assert not course.holds(record, {"toy/test_square": 2.0})  # a graded cell missing
    assert not course.holds(record, None) and not course.holds(record, {})  # not in this gradebook
    old = SubmissionResult.from_json({"student": "s", "assignment": A, "status": "graded"})  # before auto_scores
    assert course.holds(old, {"toy/test_square": 2.0})  # a record from before auto_scores: a score will do
    assert not course.holds(old, {"toy/test_square": None})  # only made, never graded


def test_a_result_that_cannot_be_recorded_is_reported_and_the_batch_goes_on(tmp_path, client, monkeypatch, capsys):
    root = toycourse.make_course(tmp_path / "course")
    for student in ("correct", "wrong"):
        toycourse.submit(root, student, student)
    real = autograde.record

    def record(cd, result):
        if result.student == "wrong":
            raise GraderError("could not write toy/wrong into the gradebook (a test)")
        return real(cd, result)

    monkeypatch.setattr(autograde, "record", record)
    first = run(root, client)
    assert set(first) == {"correct"} and first["correct"].score == 4.0
    assert "NOT RECORDED toy/wrong: GraderError: could not write toy/wrong" in capsys.readouterr().out
    assert course.read_record(course.course_directory(root)[0], A, "wrong") is None
    monkeypatch.setattr(autograde, "record", real)
    second = run(root, client)
    assert "1 submission(s) already graded and unchanged: skipped" in capsys.readouterr().out
    assert {s: r.score for s, r in second.items()} == {"correct": 4.0, "wrong": 2.0}
    assert second["correct"] == first["correct"]
