"""Per-student feedback (grader/feedback.py): nbgrader's feedback pages, with no hidden test in them.

A tiny nbgrader course: one answer cell (`double`), one test cell with a visible assert and hidden
tests (which print a secret and assert with a message of their own), one written answer. Two
students are autograded by the real `nbgrader autograde` (seconds: no torch in the notebook):

  alice  passes the visible assert, fails the hidden one, and adds a cell that prints the test
         cell's source as the kernel ran it (`In[-2]`: hidden tests included); in her own run,
         before submitting, that cell printed something else (OWN_OUTPUT)
  bob    fails the visible assert
  dave   leaks through encodings no redaction finds: his `double`, called from the visible test
         line, raises an error whose message is the running cell's source in base64, and a cell of
         his prints the whole `In` history ROT13-encoded

plus carol, whose submission the grader could not run (a "failed" .grader.json only). The
.grader.json records are written here, as grader/autograde.py and the clean re-measurement would.
"""

import hashlib
import html
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader import feedback as fb
from grader.autograde import course_directory
from grader.results import SubmissionResult

# SAWarning: nbgrader's own use of its database session, while it autogrades the course
pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")]
A = "fb"
SECRET = "secret: the hidden inputs are 7 and 11"
HIDDEN_MESSAGE = "hidden check: double(7) must be 14 exactly"
VISIBLE_MESSAGE = "double(2) should be 4"
TEST_CELL = (f'print("checking double")\nassert double(2) == 4, "{VISIBLE_MESSAGE}"\n'
             f'### BEGIN HIDDEN TESTS\nprint("{SECRET}")\nassert double(7) == 14, "{HIDDEN_MESSAGE}"\n'
             f'### END HIDDEN TESTS')
FIX = "standardise the inputs: subtract the mean, divide by the standard deviation"


def cell(source, grade_id, solution=False, points=None, markdown=False):
    meta = {"nbgrader": {"grade_id": grade_id, "solution": solution, "grade": points is not None,
                         "locked": not solution, "schema_version": 3}}
    if points is not None:
        meta["nbgrader"]["points"] = points
    return (new_markdown_cell if markdown else new_code_cell)(source, metadata=meta)


def master():
    return new_notebook(cells=[
        new_markdown_cell("# Doubling\nWrite `double`."),
        cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION", "double", solution=True),
        cell(TEST_CELL, "test_double", points=2),
        cell("Why does `double` need no loop?\n\n=== BEGIN MARK SCHEME ===\nIt is one multiplication.\n"
             "=== END MARK SCHEME ===", "explain", solution=True, points=1, markdown=True),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


OWN_OUTPUT = "what alice's own run printed"
ANSWERS = {
    "alice": ("def double(x):\n    return x + x if x < 5 else x", "print(In[-2])  # the test cell, as it ran"),
    "bob": ("def double(x):\n    return x", None),
    "dave": ("def double(x):\n    import base64\n    raise ValueError(base64.b64encode(In[-1].encode()).decode())",
             "import codecs\nprint(codecs.encode(str(In), 'rot13'))"),
}
RECORDS = {
    "alice": {"checks": [{"name": "double-accuracy", "cell": "test_double", "threshold": 0.9, "claimed": 0.95,
                          "clean": 0.62, "pool": 0.64, "passed": False,
                          "reason": "the grader measured 62.0% on its own data, below the threshold 90.0%",
                          "findings": [{"name": "input_scale", "severity": "warning",
                                        "evidence": {"input_mean": 0.87, "input_std": 0.31},
                                        "why": "the inputs are not centred: the first layer sees large positive values",
                                        "fix": FIX, "causes": [{"cause": "no normalisation", "score": 0.9}]}]}],
              "cell_notes": {"test_double": "clean check failed: the grader measured 62.0%"}},
    "bob": {"checks": [{"name": "double-gain", "cell": "test_double", "threshold": 0.02, "claimed": 0.04,
                        "clean": 0.031, "pool": None, "passed": True, "reason": None, "findings": None, "kind": "gain"}]},
    "dave": {},
    "carol": {"status": "failed", "reason": "the kernel died (a crash: os._exit, a segfault or the kernel was killed)",
              "score": 0.0, "max_score": 3.0},
}


def record(student, **fields):
    base = {"status": "graded", "reason": None, "hash": "x", "seconds": 1.0, "peak_mib": 50, "score": 0.0,
            "max_score": 3.0, "manual_pending": 1.0, "graded_at": "2026-11-22T12:00:00+0000", "sandbox": {},
            "cell_errors": {}, "checks": [], "flags": [], "cell_notes": {}}
    return dict(base, **fields)


def digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def text_of(page):
    """What a reader sees: the page without its tags."""
    return html.unescape(re.sub(r"<[^>]*>", "", page))


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The course, autograded; returns its folder."""
    from nbgrader.api import Gradebook
    from nbgrader.apps.api import NbGraderAPI

    root = tmp_path_factory.mktemp("feedback-course")
    (root / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "fbcourse"\n')
    (root / "source" / A).mkdir(parents=True)
    nbformat.write(master(), root / "source" / A / f"{A}.ipynb")
    cd, config = course_directory(root)
    api = NbGraderAPI(coursedir=cd, config=config)
    assert api.generate_assignment(A, force=True, create=True)["success"]

    release = nbformat.read(root / "release" / A / f"{A}.ipynb", as_version=4)
    for student, (answer, extra) in ANSWERS.items():
        nb = copy_of(release)
        next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "double").source = answer
        if extra:
            nb.cells.append(new_code_cell(extra))
        if student == "alice":  # what her cell showed when she ran it herself
            nb.cells[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=OWN_OUTPUT + "\n")]
        path = root / "submitted" / student / A / f"{A}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
        result = api.autograde(A, student, force=True, create=True)
        assert result["success"], result.get("log")
    with Gradebook(cd.db_url, cd.course_id) as gb:  # an instructor marks alice's written answer
        gb.find_grade("explain", A, A, "alice").manual_score = 1.0
        gb.db.commit()
    for student, fields in RECORDS.items():
        folder = root / "autograded" / student / A
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".grader.json").write_text(json.dumps(record(student, **fields)))
    return root


def copy_of(nb):
    return nbformat.from_dict(json.loads(json.dumps(nb)))


@pytest.fixture(scope="module")
def pages(course):
    before = digest(course / "autograded")
    written = fb.feedback(A, course)
    assert not (course / "feedback" / "alice" / A / ".grader.json").exists()  # only the pages are handed out
    assert digest(course / "autograded") == before, "feedback must not modify autograded/"
    return {student: Path(paths[0]).read_text() for student, paths in written.items()}


def hidden_lines():
    return [line.strip() for line in TEST_CELL.split("\n")[2:]]


def test_every_student_gets_a_page(course, pages):
    assert sorted(pages) == ["alice", "bob", "carol", "dave"]
    for student in pages:
        assert (course / "feedback" / student / A / f"{A}.html").exists()


def test_pages_show_no_hidden_test(pages):
    for student, page in pages.items():
        for text in (page, text_of(page)):
            for line in hidden_lines():
                assert line not in text, f"{student}'s page shows the hidden line {line!r}"
            assert "secret" not in text.lower(), f"{student}'s page shows what the hidden tests printed"
            assert HIDDEN_MESSAGE not in text
            assert "BEGIN HIDDEN" not in text and "7 and 11" not in text


def test_failed_hidden_test_and_clean_check(pages):
    page, text = pages["alice"], text_of(pages["alice"])
    assert "(Score: 1.0 / 3.0)" in text  # nbgrader's own header, from the gradebook
    assert "failed (0 of 2 points)" in text
    assert "A hidden test failed." in text
    assert "62.0% measured by the grader on its own data; the threshold is 90.0%" in text
    assert "your notebook printed 95.0%" in text and "Failed: the grader measured 62.0%" in text
    assert FIX in text and "input_scale" in text  # the diagnose finding, as mnistlab's table
    assert "clean check failed" in text  # the grader's note on the cell
    assert "Where the grader checked a cell itself" in " ".join(text.split())
    # Her own cell stays, with the output of her own run; what it printed in the grader's run is not shown.
    assert "print(In[-2])" in text and OWN_OUTPUT in text and fb.REDACTED not in text
    assert VISIBLE_MESSAGE in text  # the visible test's source is shown
    assert "checking double" in page  # (the visible source; its printed output is replaced)


def test_visible_assertion_message_and_gain(pages):
    text = text_of(pages["bob"])
    # Which visible line raised, in the grader's words, with the line as the master has it.
    assert f'AssertionError on line 2: assert double(2) == 4, "{VISIBLE_MESSAGE}"' in text
    assert "a gain of +3.1 points measured by the grader on its own data; the threshold is +2.0 points" in text
    assert "(your notebook printed +4.0 points). Passed." in text
    assert "(Score: 0.0 / 3.0)" in text
    assert fb.REDACTED not in text  # the hidden tests were stripped from the test cell, not just redacted


def test_encoded_leaks_do_not_reach_the_page(pages):
    """dave's error message (base64 of the running cell) and his ROT13 of `In`: nothing of the grader's run is shown."""
    import base64
    import codecs

    page, text = pages["dave"], text_of(pages["dave"])
    for line in hidden_lines():
        encoded = [base64.b64encode(line.encode()).decode()[:16], codecs.encode(line, "rot13")]
        assert not any(e in page or e in text for e in encoded), f"an encoding of {line!r} reached dave's page"
    assert codecs.encode(SECRET, "rot13") not in text
    assert "ValueError on line 2: assert double(2) == 4" in text  # the grader's words, not the error's message
    assert "codecs.encode(str(In), 'rot13')" in text  # his own cell's source is his


def test_failed_submission_page(pages):
    text = text_of(pages["carol"])
    assert "could not be graded" in text and "the kernel died" in text and "Score: 0 / 3" in text
    assert "double" not in text  # nothing of the notebook


def test_a_page_that_would_leak_is_not_written(course, pages, monkeypatch, tmp_path):
    """With the redaction step and the submitted outputs left out, alice's printed In[-2] (the grader's run)
    reaches the page: the last check refuses it."""
    left_out = (fb.redact_hidden_code, fb.outputs_as_submitted)
    monkeypatch.setattr(fb, "PIPELINE", tuple(step for step in fb.PIPELINE if step not in left_out))
    target = course / "feedback" / "alice" / A / f"{A}.html"
    target.unlink()
    with pytest.raises(fb.LeakError, match=r"alice/fb/fb"):
        fb.feedback(A, course, students=["alice"])
    assert not target.exists()
    target.write_text(pages["alice"])


# --- the stages, on their own ----------------------------------------------------------------------

def traceback(*frames):
    """An IPython 9 style traceback (with its colour codes) through `frames` = (In[n], line) pairs."""
    lines = ["\x1b[31m---\x1b[39m", "\x1b[31mAssertionError\x1b[39m    Traceback (most recent call last)"]
    lines += [f"\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[{n}]\x1b[39m\x1b[32m, line {line}\x1b[39m\n----> {line} x"
              for n, line in frames]
    return lines + ["\x1b[31mAssertionError\x1b[39m: boom"]


@pytest.mark.parametrize("frames, shown", [
    ([(5, 2)], True),  # the visible assert
    ([(5, 5)], False),  # a hidden assert
    ([(5, 2), (3, 4)], True),  # the visible line called the student's function (another cell), which raised
    ([(5, 7), (5, 4)], False),  # a visible line after the hidden region called a function defined in it
    ([], False),  # no frame to go by
])
def test_visible_error(frames, shown):
    test = new_code_cell(TEST_CELL + "\ncheck()", execution_count=5)
    error = {"output_type": "error", "ename": "AssertionError", "evalue": "boom", "traceback": traceback(*frames)}
    line_2 = f'AssertionError on line 2: assert double(2) == 4, "{VISIBLE_MESSAGE}"'
    assert fb.visible_error(test, error) == (line_2 if shown else None)
    assert "boom" not in str(fb.visible_error(test, error)), "the error's message is never shown"


def test_visible_error_older_ipython():
    test = new_code_cell(TEST_CELL, execution_count=4)
    for line, shown in ((2, True), (5, False)):
        old = [f"<ipython-input-4-0123abcd> in <module>\n      1 x\n----> {line} y\n"]
        words = fb.visible_error(test, {"ename": "E", "evalue": "v", "traceback": old})
        assert (words == f'an error on line 2: assert double(2) == 4, "{VISIBLE_MESSAGE}"') is shown  # E: not Python's


def test_secret_lines_skip_short_and_visible_lines():
    nb = new_notebook(cells=[new_code_cell("x = compute_something(1)\n### BEGIN HIDDEN TESTS\nx = compute_something(1)\n"
                                           "assert y\nassert hidden_thing(2) == 4\n### END HIDDEN TESTS")])
    secrets = fb.secret_lines([nb])
    assert "assert hidden_thing(2) == 4" in secrets
    assert "x = compute_something(1)" not in secrets  # visible anyway
    assert "assert y" not in secrets  # too short to look for


def test_redaction_survives_respacing_and_colours():
    patterns = fb.secret_patterns(["assert hidden_thing(2) == 4"])
    assert fb.redact("a\n    assert  hidden_thing(2) ==\t4\nb", patterns) == f"a\n    {fb.REDACTED}\nb"
    coloured = "\x1b[32m----> 5\x1b[39m \x1b[38;5;28;01massert\x1b[39;00m hidden_thing(\x1b[32m2\x1b[39m) == \x1b[32m4\x1b[39m"
    assert fb.redact(coloured, patterns) == f"----> 5 {fb.REDACTED}"
    with pytest.raises(fb.LeakError):
        fb.assert_no_secrets('<span class="k">assert</span> <span class="n">hidden_thing</span>(2) == 4', patterns, "x")


def test_only_known_metadata_is_kept():
    kernel = {"name": "python3", "display_name": "Python 3"}
    nb = new_notebook(cells=[new_code_cell("x = 1", metadata={"nbgrader": {"grade": False}, "tags": ["stash"]})],
                      metadata={"kernelspec": kernel, "widgets": {"stash": "anything"}})
    nb = fb.keep_known_metadata(nb, None)
    assert dict(nb.metadata) == {"kernelspec": kernel}
    assert dict(nb.cells[0].metadata) == {"nbgrader": {"grade": False}}


def test_findings_from_partial_dicts():
    """course.check_accuracy records {"name", "severity", "why"} when diagnose itself failed."""
    findings = fb.findings_of([{"name": "diagnose-failed", "severity": "info", "why": "RuntimeError: x"},
                               {"name": "odd", "severity": "fatal", "causes": [{"cause": "no score"}]}])
    assert [f.severity for f in findings] == ["info", "info"] and findings[1].causes == []
    assert "diagnose-failed" in findings._repr_html_()


def test_header_carries_notes_of_missing_cells():
    nb = new_notebook(cells=[cell("assert True", "test_kept", points=1)])
    ctx = fb.Context("dan", A, [], scores={"test_kept": (1, 1), "test_gone": (0, 2)},
                     record=SubmissionResult("dan", A, cell_notes={"test_gone": "grade cell deleted",
                                                                   "test_kept": "shown in its cell"}))
    header = fb.add_header(nb, ctx).cells[0].source
    assert "Where the grader checked a cell itself" in " ".join(header.split())
    assert "`test_gone`: grade cell deleted" in header and "test_kept" not in header
