"""grader/report.py on a tiny fake course: a real nbgrader gradebook and hand-written .grader.json records.

The class of assignment ps1 (one notebook: two code tests worth 2 and 1 points, one written answer worth 3):

  alice  graded: full marks on the tests; her written answer waits for a human
  bob    graded: partial / zero; two failed checks found output_activation (counted once) and divergence
  carol  failed: the kernel died (her reason holds HTML); tests 0, answer waiting
  dave   flagged: claimed 97% where the grader measured 41% (the flag holds a <script>)
  erin   collected but not graded yet: no record, not in the gradebook
"""

import base64
import json
import re

import nbformat
import pytest
from nbgrader.api import Gradebook

from grader import GraderError
from grader.report import report

# nbgrader's own session use (add_submission) makes SQLAlchemy warn; the coordinator ignores them too.
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

FLAG = 'claimed accuracy 97.0% does not match the clean 41.0% <script>alert("hi")</script>'
# (cell, auto score, needs manual grade) per graded student; max: test-a 2, test-b 1, q-written 3
SCORES = {
    "alice": [("test-a", 2, False), ("test-b", 1, False), ("q-written", None, True)],
    "bob": [("test-a", 1, False), ("test-b", 0, False), ("q-written", None, True)],
    "carol": [("test-a", 0, False), ("test-b", 0, False), ("q-written", 0, True)],
    "dave": [("test-a", 2, False), ("test-b", 0, False), ("q-written", 0, False)],
}


def check(name, passed, claimed, clean, findings=None):
    return {"name": name, "cell": "test-b", "threshold": 0.9, "claimed": claimed, "clean": clean, "pool": None,
            "passed": passed, "reason": None if passed else "below the threshold", "findings": findings}


def finding(name):
    return {"name": name, "severity": "error", "evidence": {}, "why": "...", "fix": "...", "causes": []}


RECORDS = {
    "alice": {"status": "graded", "reason": None, "seconds": 30.5, "flags": [], "cell_notes": {},
              "checks": [check("mnist", True, 0.95, 0.95), check("letters", True, 0.92, 0.921)]},
    "bob": {"status": "graded", "reason": None, "seconds": 41.0, "flags": [], "cell_notes": {"test-b": "clean check failed"},
            "checks": [check("mnist", False, 0.5, 0.5, [finding("output_activation"), finding("divergence")]),
                       check("letters", False, 0.4, 0.4, [finding("output_activation")])]},
    "carol": {"status": "failed", "reason": "the kernel died <b>boom</b>", "seconds": 5.0, "peak_mib": 900,
              "flags": [], "checks": []},
    "dave": {"status": "graded", "reason": None, "seconds": 22.0, "flags": [FLAG], "cell_notes": {"test-b": "clean check failed"},
             "checks": [check("mnist", False, 0.97, 0.41, [finding("output_activation")]), check("letters", True, 0.93, 0.93)]},
}


@pytest.fixture
def course(tmp_path):
    (tmp_path / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "fake"\n')
    # The source notebook only gives the cells' order: the written answer sits between the tests.
    source = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(metadata={"nbgrader": {"grade_id": g}})
                                             for g in ("test-a", "q-written", "test-b")])
    (tmp_path / "source" / "ps1").mkdir(parents=True)
    nbformat.write(source, tmp_path / "source" / "ps1" / "ps1.ipynb")
    with Gradebook(f"sqlite:///{tmp_path}/gradebook.db", "fake") as gb:
        gb.add_assignment("ps1")
        gb.add_notebook("ps1", "ps1")
        gb.add_grade_cell("test-a", "ps1", "ps1", max_score=2, cell_type="code")
        gb.add_grade_cell("test-b", "ps1", "ps1", max_score=1, cell_type="code")
        gb.add_grade_cell("q-written", "ps1", "ps1", max_score=3, cell_type="markdown")
        for student, grades in SCORES.items():
            gb.add_student(student)
            gb.add_submission("ps1", student)
            for cell, score, waiting in grades:
                grade = gb.find_grade(cell, "ps1", "ps1", student)
                grade.auto_score, grade.needs_manual_grade = score, waiting
        gb.db.commit()
    for student, record in RECORDS.items():
        folder = tmp_path / "autograded" / student / "ps1"
        folder.mkdir(parents=True)
        (folder / ".grader.json").write_text(json.dumps(record))
    for student in [*SCORES, "erin"]:
        (tmp_path / "submitted" / student / "ps1").mkdir(parents=True)
    return tmp_path


def sections(page):
    return dict(re.findall(r'<section id="(\w+)">(.*?)</section>', page, re.S))


def test_report_shows_the_class(course):
    path = report("ps1", course=str(course))
    assert path == course / "reports" / "ps1.html"
    page = path.read_text()
    parts = sections(page)
    assert list(parts) == ["summary", "exercises", "pitfalls", "runs", "flagged"]

    # scores 3, 1, 0, 2 of 6: mean 1.5, median 1.5; three written answers wait (9 points)
    assert "5 submission(s): 3 graded, 1 failed, 1 flagged, 1 not graded yet" in parts["summary"]
    assert "mean 1.5 / 6, median 1.5 / 6" in parts["summary"]
    assert "3 answer(s) in 3 submission(s) still wait for manual grading (up to 9 points" in parts["summary"]

    # per cell, in notebook order: full, partial, zero, waiting, changed by the grader
    rows = re.findall(r"<tr><td>([\w-]+)</td><td>(code|written)</td><td>(\d+)</td><td>[^<]*</td>"
                      r"<td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td></tr>", parts["exercises"])
    assert rows == [("test-a", "code", "2", "2", "1", "1", "0", "0"),
                    ("q-written", "written", "3", "0", "0", "1", "3", "0"),
                    ("test-b", "code", "1", "1", "0", "3", "0", "2")]

    # each finding once per submission; failed clean checks by name
    assert "<td>output_activation</td><td>2</td><td>bob, dave</td>" in parts["pitfalls"]
    assert "<td>divergence</td><td>1</td><td>bob</td>" in parts["pitfalls"]
    assert "<td>mnist</td><td>test-b</td><td>2</td><td>3</td><td>bob, dave</td>" in parts["pitfalls"]
    assert "<td>letters</td><td>test-b</td><td>1</td><td>3</td><td>bob</td>" in parts["pitfalls"]

    # the failed submission and its (escaped) reason
    assert "<td>carol</td><td>the kernel died &lt;b&gt;boom&lt;/b&gt;</td><td>5</td><td>900</td>" in parts["runs"]
    assert "alice" not in parts["runs"].split("<h3>")[-1]

    # the flagged one: its flag escaped, and only the check that disagrees
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;hi&quot;)&lt;/script&gt;" in parts["flagged"]
    assert "<td>dave</td>" in parts["flagged"] and "bob" not in parts["flagged"]
    assert "mnist: claimed 97.0%, clean 41.0%, threshold 90.0%" in parts["flagged"]
    assert "letters:" not in parts["flagged"]

    # the plots are inline PNGs: exercises, pitfalls and run time
    for name in ("exercises", "pitfalls", "runs"):
        data = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', parts[name])
        assert data, f"no inline plot in {name}"
        assert base64.b64decode(data.group(1)).startswith(b"\x89PNG")
    assert page.count("<table>") == 5  # exercises, findings, failed checks, failed runs, flagged
    assert 'src="http' not in page and "<link" not in page


def test_report_without_the_assignment_says_what_to_do(course, capsys):
    with pytest.raises(GraderError, match="grader autograde ps9"):  # the library raises ...
        report("ps9", course=str(course))
    from grader.__main__ import main

    with pytest.raises(SystemExit, match="grader autograde ps9"):  # ... and only the command line exits
        main(["report", "ps9", "--course", str(course)])


def test_one_agreement_rule_for_grader_and_report():
    """The report calls a check's figures apart by the same per-kind tolerance the grader flags with."""
    from grader import report
    from grader.results import CheckResult

    from grader.results import SubmissionResult

    checks = [CheckResult("noise", "c", kind="gain", claimed=0.040, clean=0.031),  # retrained: 0.9 points apart is noise
              CheckResult("apart", "c", kind="accuracy", claimed=0.95, clean=0.94),  # the same model: 1 point is not
              CheckResult("retrained", "c", kind="gain", claimed=0.040, clean=0.010),
              CheckResult("unmeasured", "c", kind="accuracy", claimed=0.9)]
    record = SubmissionResult("s", "a", status="graded", flags=["a flag"], checks=checks)
    section = report.flagged({"students": {"s": {"record": record}}})
    assert [c.name for c in checks if not c.agrees()] == ["apart", "retrained", "unmeasured"]
    assert "apart: claimed 95.0%, clean 94.0%" in section and "noise" not in section
    assert "retrained: claimed +4.0 points, clean +1.0 points" in section  # one way of writing each kind of figure
    assert "unmeasured: claimed 90.0%, clean —" in section
