"""Forged test results on the real 01-softmax: nothing solved plus a trick scores what the blank scores.

nbgrader runs the tests in the student's kernel; each trick below, put in the first answer cell of the
blank student version, used to earn points there without solving anything:

  strip-asserts         an IPython AST transformer that turns every `assert` into `pass`
  swallow-errors        set_custom_exc: every error is caught, the kernel replies "ok"
  display-score         a pre_run_cell hook that displays 1.0 before each cell (nbgrader reads an output
                        number as partial credit)
  patch-libraries       vars(train).update(...), torch.allclose / torch.equal always True
  all-at-once           all of these together

Now every test cell of 01 is decided outside the kernel (grader/decide/softmax.py, grader/clean.py), so
each scores exactly what the blank notebook scores, is flagged (grader/integrity.py), and the honest
reference in the same batch keeps every point.
"""

import shutil
from pathlib import Path

import nbformat
import pytest

from grader import autograde, build, demo

pytestmark = pytest.mark.timeout(1200)

COURSE = Path(__file__).resolve().parent.parent
A = "01-softmax"
STRIP_ASSERTS = '''import ast
class _NoAsserts(ast.NodeTransformer):
    def visit_Assert(self, node):
        return ast.Pass()
get_ipython().ast_transformers.append(_NoAsserts())
'''
SWALLOW_ERRORS = "get_ipython().set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: None)\n"
DISPLAY_SCORE = "get_ipython().events.register('pre_run_cell', lambda info: get_ipython().displayhook(1.0))\n"
PATCH_LIBRARIES = '''import torch as _torch
from mnistlab import train as _train
vars(_train).update(evaluate=lambda model, ds, *args, **kwargs: (0.1, 0.99), predict=lambda model, ds, **kwargs: ds.labels)
_torch.allclose = lambda *args, **kwargs: True
_torch.equal = lambda *args, **kwargs: True
'''
TRICKS = {"strip-asserts": STRIP_ASSERTS, "swallow-errors": SWALLOW_ERRORS, "display-score": DISPLAY_SCORE,
          "patch-libraries": PATCH_LIBRARIES,
          "all-at-once": STRIP_ASSERTS + PATCH_LIBRARIES + DISPLAY_SCORE + SWALLOW_ERRORS}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        for name, value in (("MNISTLAB_DATA_SOURCE", "offline"), ("MNISTLAB_QUIET", "1"), ("MPLBACKEND", "Agg")):
            env.setenv(name, value)
        course = tmp_path_factory.mktemp("forged")
        shutil.copy(COURSE / "nbgrader_config.py", course)
        shutil.copytree(COURSE / "source" / A, course / "source" / A)
        build.build(course, [A], solutions=False)
        name, students, _ = demo.sample_class(course, A, with_loop=False)
        class_ = {"reference": students["reference"], "blank": students["blank"]}
        for trick, code in TRICKS.items():
            notebook = nbformat.from_dict(students["blank"])
            first = next(c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code")
            first.source = code + first.source
            class_[trick] = notebook
        for student, notebook in class_.items():
            folder = course / "submitted" / student / A
            folder.mkdir(parents=True)
            nbformat.write(notebook, folder / name)
        results = autograde.autograde_many([A], course, workers=2, cell_timeout=240, timeout=1500)
    return {student: record for (_, student), record in results.items()}


def test_the_reference_keeps_every_point(graded):
    r = graded["reference"]
    assert r.status == "graded" and r.score == r.max_score - r.manual_pending, r.cell_notes
    assert not r.flags, r.flags
    decided = [c for c in r.checks if c.kind == "test"]
    assert len(decided) == 7 and all(c.passed for c in decided), decided


def test_the_blank_notebook_scores_nothing(graded):
    r = graded["blank"]
    assert r.status == "graded" and r.score == 0, r.cell_notes


@pytest.mark.parametrize("trick", TRICKS)
def test_a_trick_scores_what_the_blank_scores_and_is_flagged(graded, trick):
    r, blank = graded[trick], graded["blank"]
    assert r.status == "graded", r.reason
    assert r.score == blank.score == 0, f"{trick}: {r.score} points, the blank {blank.score}: {r.cell_notes}"
    assert any("changes how the kernel runs the test cells" in f or "replaces a library function" in f for f in r.flags), r.flags
    assert all(not c.passed for c in r.checks if c.kind == "test"), "a decided cell passed on a blank notebook"


def test_every_decided_cell_says_why_it_scored_nothing(graded):
    """The reason is the grader's: the cell handed nothing in (its hidden part stopped at the unsolved code)."""
    for trick in TRICKS:
        notes = graded[trick].cell_notes
        for check in graded[trick].checks:
            if check.kind == "test":
                assert "handed in" in notes.get(check.cell, ""), (trick, check.cell, notes)
