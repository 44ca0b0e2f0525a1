"""grader/results.py: a check travels as JSON (out of the sandbox, into the record) and comes back the same."""

from grader.results import CheckResult, figure


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
