"""How long a student waits: Run All and Validate of every answered notebook, on this machine.

    .venv/bin/python bench/time_notebooks.py [ASSIGNMENT ...]

Run All: the reference solution (solutions/A/A.ipynb) executed top to bottom in a fresh kernel,
as JupyterLab's "Run All Cells" does. Validate: `nbgrader validate` on the same notebook, as the
Validate button does (nbgrader sets NBGRADER_EXECUTION, so exploratory cells that check
`course.grading()` are skipped). Offline data, caches warm (a first run also renders the letters).

Writes bench/notebook_times.json, and the "**How long.**" line of each master's introduction
(source/A/A.ipynb; then run `make build`). `python -m grader release` puts the times in the student
README; tests/test_course.py checks that the notebooks say what the file says.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from grader.release import HOW_LONG, how_long  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIMES = ROOT / "bench" / "notebook_times.json"


def run_all(notebook):
    """Seconds to execute every cell of `notebook` in a fresh kernel."""
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def validate(notebook):
    """Seconds for `nbgrader validate` (in the course folder, with its config); fails loudly if it does."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nbgrader", "validate", str(notebook)], cwd=ROOT,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or "Success!" not in done.stdout:
        raise SystemExit(f"validate {notebook.name} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds


def main(names):
    os.environ.setdefault("MNISTLAB_DATA_SOURCE", "offline")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ["MNISTLAB_QUIET"] = "1"
    names = names or sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir() and any(p.glob("*.ipynb")))
    times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            notebook = Path(scratch) / name / f"{name}.ipynb"
            notebook.parent.mkdir()
            notebook.write_bytes((ROOT / "solutions" / name / f"{name}.ipynb").read_bytes())
            times[name] = {"run_all_s": round(run_all(notebook)), "validate_s": round(validate(notebook)),
                           "cores": os.cpu_count()}
            print(f"{name}: Run All {times[name]['run_all_s']} s, Validate {times[name]['validate_s']} s", flush=True)
            TIMES.write_text(json.dumps(dict(sorted(times.items())), indent=1) + "\n")  # after each: a long run keeps what it measured
    print(f"wrote {TIMES.relative_to(ROOT)}")
    for name in names:
        state_in_introduction(ROOT / "source" / name / f"{name}.ipynb", how_long(times[name]))
    print("wrote the introductions' times into source/: run `make build`")


def state_in_introduction(master, sentence):
    """Replace the introduction's HOW_LONG line with `sentence` (or add it at the end of the first cell)."""
    nb = nbformat.read(master, as_version=4)
    intro = nb.cells[0]
    lines = [line for line in intro.source.splitlines() if not line.startswith(HOW_LONG)]
    intro.source = "\n".join(lines).rstrip() + "\n\n" + sentence
    nbformat.write(nb, master)


if __name__ == "__main__":
    main(sys.argv[1:])
