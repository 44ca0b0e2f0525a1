"""nbgrader's cell metadata, read one way everywhere in the grader, as nbgrader reads it.

`nbgrader.utils.is_grade`, `is_solution` and `is_locked` say what a cell is. They trust the metadata to
be what nbgrader wrote; a submitted notebook may hold anything there (a list, a string, a number), on
which they would crash. So each function here first reads `metadata.nbgrader` as a dict (anything else
counts as no nbgrader metadata), then decides as nbgrader's function does: the same rules, written out here
so that a Dask worker, which reads every submitted notebook, need not import nbgrader (0.6 s of CPU per
process). tests/test_nbcell.py checks them against nbgrader's own over every combination of the flags.
"""


def metadata(cell):
    """The cell's nbgrader metadata as a dict ({} when missing or not a dict)."""
    meta = cell.get("metadata", {})
    found = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    return found if isinstance(found, dict) else {}


def grade_id(cell):
    """The cell's grade id (a string), or None."""
    found = metadata(cell).get("grade_id")
    return found if isinstance(found, str) else None


def is_grade(cell):
    """A graded cell (nbgrader.utils.is_grade): its metadata says "grade"."""
    return bool(metadata(cell).get("grade", False))


def is_solution(cell):
    """A cell the student writes (nbgrader.utils.is_solution): its metadata says "solution"."""
    return bool(metadata(cell).get("solution", False))


def is_locked(cell):
    """A cell nbgrader puts back as the master has it (nbgrader.utils.is_locked): never a solution cell; always a
    graded one; otherwise as its metadata says "locked"."""
    if is_solution(cell):
        return False
    return is_grade(cell) or bool(metadata(cell).get("locked", False))


def is_test(cell):
    """An autograder test cell: a code cell that nbgrader grades and the student does not write."""
    return cell.get("cell_type") == "code" and is_grade(cell) and not is_solution(cell)
