"""grader/nbcell.py: nbgrader's metadata read safely, however a submitted notebook writes it."""

from nbformat.v4 import new_code_cell, new_markdown_cell

from grader import nbcell


def test_what_nbgrader_writes():
    test = new_code_cell("assert True", metadata={"nbgrader": {"grade": True, "solution": False, "grade_id": "t", "points": 1}})
    answer = new_code_cell("x = 1", metadata={"nbgrader": {"grade": False, "solution": True, "grade_id": "a"}})
    written = new_markdown_cell("why", metadata={"nbgrader": {"grade": True, "solution": True, "grade_id": "q"}})
    assert nbcell.is_test(test) and nbcell.is_locked(test) and nbcell.grade_id(test) == "t"
    assert nbcell.is_solution(answer) and not nbcell.is_grade(answer) and not nbcell.is_locked(answer)
    assert nbcell.is_grade(written) and not nbcell.is_test(written)


def test_hostile_metadata_reads_as_none():
    for odd in ([1, 2], "grade", 7, None, {"grade_id": ["a"], "grade": True}):
        cell = new_code_cell("x", metadata={"nbgrader": odd})
        assert nbcell.grade_id(cell) is None
        assert nbcell.is_grade(cell) == (isinstance(odd, dict))
    assert nbcell.metadata({"metadata": [1]}) == {} and not nbcell.is_grade({"metadata": "x", "cell_type": "code"})


def test_the_same_answers_as_nbgraders_own_helpers():
    """nbcell decides as nbgrader.utils does, for every combination of the three flags (absent, true, false and
    the other values JSON metadata may hold)."""
    import itertools

    from nbformat import NotebookNode
    from nbgrader import utils

    absent = object()
    values = [absent, True, False, 0, 1, "", "yes", None, [], [0]]
    for grade, solution, locked in itertools.product(values, repeat=3):
        flags = {name: value for name, value in (("grade", grade), ("solution", solution), ("locked", locked))
                 if value is not absent}
        for kind in ("code", "markdown"):
            cell = NotebookNode(cell_type=kind, source="", metadata=NotebookNode(nbgrader=NotebookNode(flags)))
            theirs = (bool(utils.is_grade(cell)), bool(utils.is_solution(cell)), bool(utils.is_locked(cell)))
            assert (nbcell.is_grade(cell), nbcell.is_solution(cell), nbcell.is_locked(cell)) == theirs, flags
    bare = NotebookNode(cell_type="code", source="", metadata=NotebookNode())
    assert (utils.is_grade(bare), utils.is_solution(bare), utils.is_locked(bare)) == (False, False, False)
    assert (nbcell.is_grade(bare), nbcell.is_solution(bare), nbcell.is_locked(bare)) == (False, False, False)


def test_reading_cells_does_not_import_nbgrader():
    """A Dask worker imports grader.execute (which reads every submitted notebook through this module) without
    nbgrader: nbgrader's import costs each worker 0.6 s of CPU at the start of a run."""
    import subprocess
    import sys

    code = "import sys, grader.execute; print(sorted(m for m in sys.modules if m.split('.')[0] == 'nbgrader'))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
