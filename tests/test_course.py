"""The course is consistent: generated notebooks match source/, solutions pass, blanks fail.

(nbval executes every reference solution separately: `make test` runs pytest over solutions/
with --nbval-lax.)
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.build import assignments, tool_env
from mnistlab import data, thresholds

COURSE = Path(__file__).resolve().parent.parent
ASSIGNMENTS = assignments(COURSE)
EXPECTED = ["01-softmax", "02-svm-vs-logistic", "03-hidden-layer", "04-augmentation", "05-pitfalls"]


def read(path):
    return nbformat.read(path, as_version=4)


def nbgrader(*args, cwd=COURSE):
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, capture_output=True, text=True,
                          env=tool_env(), timeout=1800)
    return done.stdout + done.stderr


def grade_cells(notebook):
    return [cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("grade")]


def test_every_assignment_of_the_course_exists():
    assert ASSIGNMENTS == EXPECTED, "source/ must hold the five assignments of the course"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """Student versions generated afresh from source/, in a scratch copy of the course."""
    scratch = tmp_path_factory.mktemp("course")
    shutil.copy(COURSE / "nbgrader_config.py", scratch)
    shutil.copytree(COURSE / "source", scratch / "source")
    for name in ASSIGNMENTS:
        output = nbgrader("generate_assignment", name, "--force", f"--db=sqlite:///{scratch / 'gb.db'}", cwd=scratch)
        assert (scratch / "notebooks" / name / f"{name}.ipynb").exists(), output
    return scratch / "notebooks"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_student_version_is_in_sync_with_source(name, regenerated):
    fresh = read(regenerated / name / f"{name}.ipynb")
    committed = read(COURSE / "notebooks" / name / f"{name}.ipynb")
    assert [(c.cell_type, c.source, c.metadata) for c in committed.cells] == \
           [(c.cell_type, c.source, c.metadata) for c in fresh.cells], \
        f"notebooks/{name} is out of date with source/{name}: run `make build` and commit the result"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_solution_is_in_sync_with_source(name):
    source = read(COURSE / "source" / name / f"{name}.ipynb")
    solution = read(COURSE / "solutions" / name / f"{name}.ipynb")
    assert [(c.cell_type, c.source) for c in solution.cells] == [(c.cell_type, c.source) for c in source.cells], \
        f"solutions/{name} is out of date with source/{name}: run `make build` and commit the result"
    executed = [c for c in solution.cells if c.cell_type == "code" and c.source.strip()]
    assert all(c.get("execution_count") for c in executed), f"solutions/{name} was not executed: run `make build`"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_student_version_hides_solutions_and_hidden_tests(name):
    student = read(COURSE / "notebooks" / name / f"{name}.ipynb")
    text = "\n".join(cell.source for cell in student.cells)
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    assert "YOUR CODE HERE" in text, "a student version must have exercises"
    assert not any(cell.get("outputs") for cell in student.cells if cell.cell_type == "code")


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_every_assignment_has_hidden_tests_and_hand_graded_answers(name):
    source = read(COURSE / "source" / name / f"{name}.ipynb")
    tests = [c for c in grade_cells(source) if c.cell_type == "code"]
    answers = [c for c in grade_cells(source) if c.cell_type == "markdown"]
    assert tests and any("BEGIN HIDDEN TESTS" in c.source for c in tests)
    assert answers, "the 'why' questions are markdown cells graded by hand"
    assert all(c.metadata["nbgrader"].get("points", 0) > 0 for c in tests + answers)


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_graded_cells_of_the_solution_write_nothing_to_stderr(name):
    """nbgrader gives 0 points to a test cell with any stderr output (a PyTorch warning is enough)."""
    solution = read(COURSE / "solutions" / name / f"{name}.ipynb")
    noisy = [cell.metadata["nbgrader"]["grade_id"] for cell in grade_cells(solution) if cell.cell_type == "code"
             and any(o.output_type == "stream" and o.name == "stderr" or o.output_type == "error" for o in cell.outputs)]
    assert not noisy, f"graded cells with stderr or errors in solutions/{name}: {noisy}"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_nbgrader_validate_passes_the_solution(name):
    output = nbgrader("validate", f"solutions/{name}/{name}.ipynb")
    assert "Success! Your notebook passes all the tests." in output, output[-3000:]


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_nbgrader_validate_fails_every_test_of_the_blank_notebook(name):
    output = nbgrader("validate", "--invert", f"notebooks/{name}/{name}.ipynb")
    assert "Success! The notebook does not pass any tests." in output, output[-3000:]


def test_thresholds_table_covers_offline_and_full_data():
    """Every check has an offline and a full value. Every measured value is the course's rule applied
    to the figures it records (python -m grader calibrate wrote them); an unmeasured one says why."""
    assert {a for a, _ in thresholds.TABLE} == set(EXPECTED), "every assignment has graded thresholds"
    for key, values in thresholds.TABLE.items():
        assert set(values) == {"offline", "full"}, f"{key} needs an 'offline' and a 'full' value"
        for kind, entry in values.items():
            assert 0 < entry["threshold"] <= 1, f"{key} {kind}: thresholds are accuracies (or gains) in (0, 1]"
            if entry["figures"]:
                assert entry["threshold"] == thresholds.rule(entry["figures"]), f"{key} {kind}: not the rule's value"
                assert entry["seeds"] == len(entry["figures"])
                # the sentence of the data it was measured on: torchvision's real data is the "full" column
                assert entry["data"].startswith(data.REAL_DATA) == (kind == "full"), f"{key} {kind}: {entry['data']}"
                assert entry["measured_by"].startswith("python -m grader calibrate")
            else:
                assert kind == "full" and "not measured" in entry["notes"].lower(), f"{key} {kind}: measured by whom?"
        assert values["offline"]["figures"], f"{key}: the offline threshold must be measured (grader calibrate)"


def test_every_threshold_is_used_by_a_notebook():
    text = "\n".join(cell.source for name in ASSIGNMENTS
                     for cell in read(COURSE / "source" / name / f"{name}.ipynb").cells)
    unused = [f"{a}/{c}" for a, c in thresholds.TABLE if c not in text]
    assert not unused, f"thresholds no notebook checks: {unused}"


def test_threshold_lookup_says_what_is_known():
    from mnistlab.data import Dataset
    import torch

    ds = Dataset(torch.zeros(1, 28, 28, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64), ["0"], "offline stand-in")
    with pytest.raises(KeyError, match="no threshold for 01-softmax/nonsense"):
        thresholds.threshold("01-softmax", "nonsense", ds)


# --- the grader re-measures every accuracy threshold (grader/checks.py) ---------------------------

HIDDEN = "### BEGIN HIDDEN TESTS"


def visible(source):
    return source.split(HIDDEN)[0]


@pytest.mark.parametrize("name", EXPECTED)
def test_every_threshold_cell_hands_its_model_in(name):
    """A grade cell that checks a threshold calls course.check_accuracy/check_gain (which hand the model
    in), and the grader knows that cell and threshold: nothing is graded on the kernel's word alone."""
    from grader.checks import checks_of

    checks = checks_of(name)
    master = read(COURSE / "source" / name / f"{name}.ipynb")
    cells = {c.metadata["nbgrader"]["grade_id"]: c.source for c in grade_cells(master)}
    for handin, check in checks.items():
        assert check.cell in cells, f"grader/checks.py: {name}/{handin} names the cell {check.cell}, not in the notebook"
        assert check.threshold in {t for (a, t) in thresholds.TABLE if a == name}, f"{name}/{handin}: unknown threshold"
        source = visible(cells[check.cell]) if check.kind != "gain" or not check.handin else cells[check.cell]
        assert "check_gain" in source or "check_accuracy" in source or check.handin, \
            f"{name}: cell {check.cell} must hand its model in with course.check_accuracy or course.check_gain"
        assert f'"{check.threshold}"' in source or check.handin, f"{name}: cell {check.cell} does not check {check.threshold!r}"
    checked_cells = {check.cell for check in checks.values()}
    for grade_id, source in cells.items():
        if "thresholds.threshold(" in visible(source) or "check_accuracy(" in source or "check_gain(" in source:
            assert grade_id in checked_cells, f"{name}: cell {grade_id} checks a threshold the grader does not re-measure"


@pytest.mark.parametrize("name", EXPECTED)
def test_every_test_cell_is_decided_outside_the_kernel(name):
    """Every automatically graded cell hands its values in from its hidden part (course.hand_in), the grader
    has a decide function for it (grader/decide), and no hidden part asserts anything: the verdict is the
    grader's, never the kernel's (a student's code in the kernel can change what an assert does)."""
    from grader.decide import cells_of
    from grader.rescore import handed_in_cells

    path = COURSE / "source" / name / f"{name}.ipynb"
    tests = {c.metadata["nbgrader"]["grade_id"]: c.source for c in grade_cells(read(path)) if c.cell_type == "code"}
    handed = handed_in_cells({f"source/{name}/{name}.ipynb": path.read_bytes()})
    assert handed == set(tests), f"{name}: test cells that hand nothing in: {sorted(set(tests) - handed)}"
    assert set(cells_of(name)) == set(tests), f"{name}: grader/decide decides {sorted(cells_of(name))}, the tests are {sorted(tests)}"
    for grade_id, source in tests.items():
        hidden = source.split(HIDDEN)[1] if HIDDEN in source else ""
        assert not re.search(r"^\s*assert\b", hidden, re.M), f"{name}: the hidden part of {grade_id} asserts in the kernel"


@pytest.mark.parametrize("name", EXPECTED)
def test_no_grade_cell_ends_in_a_value(name):
    """nbgrader takes a number left as a grade cell's last value as its partial score (e.g. 0.905
    points for `course.check_accuracy(...)` as the last line): graded cells must end in a statement."""
    import ast

    master = read(COURSE / "source" / name / f"{name}.ipynb")
    for cell in grade_cells(master):
        if cell.cell_type != "code":
            continue
        last = ast.parse(cell.source).body[-1]
        called = ast.unparse(last.value.func) if isinstance(last, ast.Expr) and isinstance(last.value, ast.Call) else ""
        is_print = called in ("print", "display", "course.hand_in", "course.hand_in_model")  # these return None
        assert not isinstance(last, ast.Expr) or is_print, \
            f"{name}: grade cell {cell.metadata['nbgrader']['grade_id']} ends in a value ({ast.unparse(last)[:60]}): assign it"


DRAWS = re.compile(r"^(?!\s*#).*\b(plots\.(?!\w*_data\b)\w+|plt\.(?!close\b|rcParams\b)\w+|\w+\.plot|imshow)\(", re.M)


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_every_cell_that_draws_shows_its_figure_in_the_solution(name):
    """A reader of the published solution sees every figure the prose talks about: a cell that calls
    a plotting helper (plots.*, plt.*, .plot, imshow) has an image output. (Built with a non-inline
    backend, the solutions once held none at all.)"""
    solution = read(COURSE / "solutions" / name / f"{name}.ipynb")
    drawing = [cell for cell in solution.cells if cell.cell_type == "code" and DRAWS.search(cell.source)]
    assert drawing, f"{name} draws no figure at all"
    missing = [cell.metadata.get("nbgrader", {}).get("grade_id") or cell.get("id") for cell in drawing
               if not any("image/png" in output.get("data", {}) for output in cell.get("outputs", []))]
    assert missing == [], f"solutions/{name}: these cells draw but show no figure (run `make build`): {missing}"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_every_introduction_says_how_long_run_all_and_validate_take(name):
    """Measured by bench/time_notebooks.py, which writes both the file and the sentence."""
    import json

    from grader import release

    times = json.loads((COURSE / release.TIMES).read_text())
    assert name in times, f"{name} was never timed: run bench/time_notebooks.py {name}"
    intro = read(COURSE / "notebooks" / name / f"{name}.ipynb").cells[0].source
    assert release.how_long(times[name]) in intro, f"{name}'s introduction must say: {release.how_long(times[name])}"
