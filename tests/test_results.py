"""grader/results.py: a check and a submission's result travel as JSON (out of the sandbox, into the record)
and come back the same."""

import json

from grader.results import CheckResult, SubmissionResult, figure


def test_a_check_survives_json_and_an_old_record():
    check = CheckResult(name="mnist-linear", cell="test-mnist-accuracy", threshold=0.885, claimed=0.9, clean=0.905,
                        passed=True, findings=[{"name": "input_scale"}])
    assert CheckResult.from_json(check.to_json()) == check
    old = {"name": "svm", "cell": "test-ex1-svm", "passed": False, "reason": "below", "unknown": 1}  # older grader
    assert CheckResult.from_json(old) == CheckResult(name="svm", cell="test-ex1-svm", reason="below")


def test_one_tolerance_and_one_way_to_show_a_figure():
    assert CheckResult("a", "c", claimed=0.95, clean=0.953).agrees()
    assert not CheckResult("a", "c", claimed=0.95, clean=0.94).agrees()
    assert CheckResult("g", "c", kind="gain", claimed=0.040, clean=0.031).agrees()  # retrained: noise
    assert not CheckResult("a", "c", claimed=0.9).agrees() and CheckResult("t", "c", kind="test").agrees()
    assert figure(0.0425, "gain") == "+4.2 points" and figure(0.9051, "accuracy") == "90.5%"
    assert CheckResult("a", "c").shown("clean") == "—" and figure(None, "accuracy") == "not measured"


def test_a_submission_result_is_its_record_without_what_only_the_worker_needs():
    check = CheckResult(name="mnist-linear", cell="test-acc", kind="accuracy", threshold=0.885, clean=0.9, passed=True)
    result = SubmissionResult("alice", "01-softmax", status="graded", hash="abc", cell_errors={"test-x": "AssertionError"},
                              checks=[check], flags=["a flag"], cell_notes={"test-x": "a note"}, seconds=12.5,
                              score=3.0, max_score=4.0, manual_pending=1.0, auto_scores={"01/test-acc": 1.0},
                              scores={"notebooks": []}, files={"01.ipynb": b"{}"}, log_tail="nbgrader said")
    record = json.loads(json.dumps(result.to_json()))  # what .grader.json holds
    assert not {"scores", "files", "log_tail"} & set(record)
    assert record["checks"][0]["clean"] == 0.9 and record["student"] == "alice"
    back = SubmissionResult.from_json(record)
    assert back.checks == [check] and back.flags == ["a flag"] and back.score == 3.0
    assert back == SubmissionResult(**{**vars(result), "scores": None, "files": {}, "log_tail": ""})


def test_an_older_record_reads_with_defaults():
    old = {"status": "failed", "reason": "kernel died", "hash": "x", "seconds": 3.0, "score": 0.0, "max_score": 4.0,
           "cell_errors": None, "checks": [{"name": "svm", "passed": False}, "not a check"], "retired_key": 1}
    back = SubmissionResult.from_json(dict(old, student="bob", assignment="02"))
    assert (back.status, back.reason, back.manual_pending, back.cell_errors, back.flags) == ("failed", "kernel died", 0, {}, [])
    assert back.checks == [CheckResult(name="svm", cell=None)] and back.checks[0].kind is None  # no kind: an old record
