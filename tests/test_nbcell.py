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
