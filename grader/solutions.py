"""The key results a notebook shows (see mnistlab.course.key_result), read from an executed notebook."""

import nbformat


def key_results(notebook):
    """The figures a notebook (a path or a NotebookNode) tagged with mnistlab.course.key_result, in order."""
    if not isinstance(notebook, nbformat.NotebookNode):
        notebook = nbformat.read(notebook, as_version=4)
    return [output["metadata"]["mnistlab"] for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if "mnistlab" in output.get("metadata", {})]
