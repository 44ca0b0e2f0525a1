"""Execute the reference solutions and collect each one's key result (see mnistlab.course.key_result)."""

import shutil
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run_notebook(path, timeout=600):
    """Execute a copy of the notebook at `path` in a scratch folder; return (executed notebook, error or None)."""
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as scratch:
        for item in Path(path).parent.iterdir():  # the notebook's neighbours (data files, images)
            if item.is_file():
                shutil.copy(item, scratch)
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": scratch}})
        try:
            client.execute()
            return notebook, None
        except Exception as error:  # a failing cell: report it, keep going with the others
            return notebook, f"{type(error).__name__}: {str(error).strip().splitlines()[-1][:200]}"


def key_results(notebook):
    """The figures a notebook tagged with mnistlab.course.key_result, in order."""
    return [output["metadata"]["mnistlab"] for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if "mnistlab" in output.get("metadata", {})]


def run_all(course="."):
    rows = []
    paths = sorted((Path(course) / "solutions").glob("*/*.ipynb"))
    for path in paths:
        start = time.perf_counter()
        notebook, error = run_notebook(path)
        seconds = time.perf_counter() - start
        figures = key_results(notebook) or [{"label": "-", "accuracy": None, "data": "-"}]
        for figure in figures:
            rows.append({"notebook": path.parent.name, "seconds": seconds, "error": error, **figure})
        print(f"ran {path} in {seconds:.0f} s{' - FAILED: ' + error if error else ''}", flush=True)
    return rows


def format_table(rows):
    if not rows:
        return "No reference solutions yet (solutions/*/*.ipynb): run `make build` once source/ has assignments."
    header = ("notebook", "key result", "accuracy", "data used", "seconds")
    lines = [(r["notebook"], r["label"], "FAILED" if r["error"] else f"{r['accuracy']:.1%}" if r["accuracy"] is not None else "-",
              r["data"], f"{r['seconds']:.0f}") for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*line) for line in lines]
                     + [f"total: {sum({r['notebook']: r['seconds'] for r in rows}.values()):.0f} s"])
