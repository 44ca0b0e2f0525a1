"""grader/execute.py: one submission's grading as STAGES over a Grading, each stage a plain function.

The sandbox and nbgrader are replaced here by what they return, so that the order and the hand-over between
the stages are tested alone (tests/test_grader.py and tests/test_forged.py grade for real)."""

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from grader import execute, preflight, rescore
from grader.results import CheckResult

TEST = {"nbgrader": {"grade": True, "solution": False, "grade_id": "test-add", "points": 1}}
NOTEBOOK = nbformat.writes(new_notebook(cells=[new_code_cell("get_ipython().set_custom_exc((Exception,), print)"),
                                               new_code_cell("assert add(1, 2) == 3", metadata=TEST)])).encode()
JOB = {"student": "ann", "assignment": "a1", "hash": "h", "clean": True}


def test_the_stages_in_order():
    assert [s.__name__ for s in execute.STAGES] == ["check_files", "execute_isolated", "rescore_clean", "verify"]


def test_a_refused_submission_never_reaches_nbgrader(monkeypatch):
    monkeypatch.setattr(preflight, "check_notebooks", lambda job: ({}, ["no notebook a1.ipynb was submitted"], {}))
    monkeypatch.setattr(execute, "run_nbgrader", lambda *a: (_ for _ in ()).throw(AssertionError("nbgrader ran")))
    result = execute.grade_submission(JOB)
    assert result.status == "failed" and result.reason == "no notebook a1.ipynb was submitted"


def test_the_clean_verdict_sets_the_score_and_the_flags_say_why(monkeypatch):
    scores = {"notebooks": [{"name": "a1", "grades": [{"name": "test-add", "auto_score": 1.0, "max_score": 1.0,
                                                      "needs_manual_grade": False}]}]}
    monkeypatch.setattr(preflight, "check_notebooks", lambda job: ({"a1.ipynb": NOTEBOOK}, [], {}))
    monkeypatch.setattr(execute, "run_nbgrader", lambda job, files, scratch: {
        "scores": scores, "files": {"a1.ipynb": NOTEBOOK}, "errors": {}, "reason": None, "sandbox": {}, "log": "",
        "peak": 0})
    failed = CheckResult(name="test-add", cell="test-add", kind="test", reason="nothing was handed in").to_json()
    monkeypatch.setattr(rescore, "clean_checks", lambda job, scratch: [failed])
    result = execute.grade_submission(JOB)
    assert result.status == "graded"
    assert result.scores["notebooks"][0]["grades"][0]["auto_score"] == 0.0  # the kernel passed it; the grader did not
    assert "nothing was handed in" in result.cell_notes["test-add"]
    assert any("passed in the student's kernel, but the grader's check failed" in f for f in result.flags)
    assert any("changes how the kernel runs the test cells" in f for f in result.flags)  # verify read the notebook


def test_another_course_is_graded_by_nbgrader_alone(monkeypatch):
    monkeypatch.setattr(preflight, "check_notebooks", lambda job: ({"a1.ipynb": NOTEBOOK}, [], {}))
    monkeypatch.setattr(execute, "run_nbgrader", lambda job, files, scratch: {
        "scores": {"notebooks": []}, "files": {}, "errors": {}, "reason": None, "sandbox": {}, "log": "", "peak": 0})
    monkeypatch.setattr(rescore, "clean_checks", lambda job, scratch: (_ for _ in ()).throw(AssertionError("rescored")))
    assert execute.grade_submission(dict(JOB, clean=False)).status == "graded"
