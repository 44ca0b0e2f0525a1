"""`python -m grader calibrate`: the thresholds measured again, by the course's one rule."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from grader import calibrate
from mnistlab import thresholds

ROOT = Path(__file__).resolve().parents[1]
QUICK = "02-svm-vs-logistic"  # the quickest assignment to run


def test_the_rule_is_a_tolerance_bound_that_widens_with_fewer_seeds():
    five = [0.905, 0.898, 0.904, 0.906, 0.898]  # mean 0.9022, sd 0.0039
    assert thresholds.rule(five) == 0.875  # 0.9022 - 5.741 * 0.0039 = 0.8798, rounded down to half a point
    assert thresholds.rule(five[:3]) < thresholds.rule(five)  # 3 seeds say less about the spread
    assert thresholds.rule([1.0, 1.0, 1.0]) == 1.0  # e.g. fitting all 150 training images on every seed
    with pytest.raises(ValueError, match="3 to 20 seeds"):
        thresholds.rule([0.9, 0.8])


def test_the_threshold_column_comes_from_the_standin_field():
    assert (thresholds.kind_of(True), thresholds.kind_of(False)) == ("offline", "full")
    with pytest.raises(TypeError, match="pass ds.standin, not ds.source"):
        thresholds.kind_of("torchvision MNIST 10000")


@pytest.mark.timeout(900)
def test_calibrating_offline_reproduces_the_shipped_thresholds(tmp_path, monkeypatch):
    """Quick mode: 3 of the shipped calibration's seeds, on the offline stand-ins. The figures are the
    shipped ones (the same seeds on the same data), so the rule gives the shipped thresholds again."""
    monkeypatch.setenv("MNISTLAB_DATA_SOURCE", "offline")
    table = tmp_path / "thresholds.json"
    table.write_text(thresholds.TABLE_FILE.read_text())
    monkeypatch.setattr(thresholds, "TABLE_FILE", table)
    monkeypatch.setattr(thresholds, "TABLE", copy.deepcopy(thresholds.TABLE))  # --write updates it too
    summary = calibrate.calibrate(QUICK, ROOT, seeds=3, write=True, progress=lambda line: None)
    assert {m["check"] for m in summary.values()} == {c for (a, c) in thresholds.TABLE if a == QUICK}
    for name, measured in summary.items():
        shipped = thresholds.TABLE[QUICK, measured["check"]]["offline"]
        if shipped["figure"] != name:  # a check on several figures records the one with the lowest bar
            continue
        assert measured["data"] == shipped["data"]
        assert measured["figures"] == pytest.approx(shipped["figures"][:3], abs=0.005), name
        # The shipped threshold is the rule on its figures, and with these 3 runs in place of its first 3
        # the rule gives it again (to the half point it rounds to).
        assert shipped["threshold"] == thresholds.rule(shipped["figures"])
        again = thresholds.rule(measured["figures"] + shipped["figures"][3:])
        assert abs(again - shipped["threshold"]) <= 0.005, name
    # --write put the new measurement in the table, keeping its notes.
    for check in ("svm", "logistic"):
        written = json.loads(table.read_text())[f"{QUICK}/{check}"]["offline"]
        assert written["seeds"] == 3 and written["figures"] == pytest.approx(summary[written["figure"]]["figures"], abs=1e-6)
        assert written["notes"] == thresholds.TABLE[QUICK, check]["offline"]["notes"]


def test_a_reference_that_fails_is_reported_not_averaged(tmp_path):
    course = tmp_path / "course"
    (course / "source" / "broken").mkdir(parents=True)
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise RuntimeError('the reference is broken')")])
    nbformat.write(nb, course / "source" / "broken" / "broken.ipynb")
    with pytest.raises(calibrate.CalibrationError, match="handed in no graded figure .* failed: RuntimeError: the reference is broken"):
        calibrate.calibrate("broken", course, seeds=3, progress=lambda line: None)
    with pytest.raises(FileNotFoundError, match="no master notebook"):
        calibrate.calibrate("missing", course, seeds=3)


def test_the_command_line_says_what_is_wrong():
    done = subprocess.run([sys.executable, "-m", "grader", "calibrate", "01-softmax", "--seeds", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "at least 3 seeds" in done.stderr
