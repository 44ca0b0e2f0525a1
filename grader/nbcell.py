"""nbgrader's cell metadata, read one way everywhere in the grader, with nbgrader's own helpers.

`nbgrader.utils.is_grade`, `is_solution` and `is_locked` say what a cell is. They trust the metadata to
be what nbgrader wrote; a submitted notebook may hold anything there (a list, a string, a number), on
which they would crash. So each function here first reads `metadata.nbgrader` as a dict (anything else
counts as no nbgrader metadata), then asks nbgrader.
"""

from nbformat import NotebookNode
from nbgrader import utils


def metadata(cell):
    """The cell's nbgrader metadata as a dict ({} when missing or not a dict)."""
    meta = cell.get("metadata", {})
    found = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    return found if isinstance(found, dict) else {}


def _checked(cell):
    return NotebookNode(metadata=NotebookNode(nbgrader=NotebookNode(metadata(cell))), cell_type=cell.get("cell_type"))


def grade_id(cell):
    """The cell's grade id (a string), or None."""
    found = metadata(cell).get("grade_id")
    return found if isinstance(found, str) else None


def is_grade(cell):
    return bool(utils.is_grade(_checked(cell)))


def is_solution(cell):
    return bool(utils.is_solution(_checked(cell)))


def is_locked(cell):
    return bool(utils.is_locked(_checked(cell)))


def is_test(cell):
    """An autograder test cell: a code cell that nbgrader grades and the student does not write."""
    return cell.get("cell_type") == "code" and is_grade(cell) and not is_solution(cell)
