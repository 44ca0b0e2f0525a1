"""Try a notebook's test cells against grader/decide without a whole grading run (for course authors).

    python -m grader.decide.tryout ASSIGNMENT NOTEBOOK [--hand-in DIR] [--reuse]

Executes NOTEBOOK (e.g. the master source/A/A.ipynb, hidden tests included) in a plain Jupyter kernel
as nbgrader would (NBGRADER_EXECUTION set, so the cells hand their values in to DIR), then prints every
clean verdict: grader/clean.py's accuracy checks and grader/decide's cell decisions. With --reuse the
notebook is not run again: the values already in DIR are decided (to work on a decide function).
No sandbox: run it only on notebooks you trust.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path


def execute(notebook, hand_in):
    """Run every cell of `notebook` with the grader's environment; return {cell id: error name} of cells that raised."""
    import nbformat
    from nbclient import NotebookClient

    from grader import nbcell

    os.environ.update(NBGRADER_EXECUTION="autograde", MNISTLAB_HAND_IN=str(hand_in), MNISTLAB_QUIET="1",
                      MPLBACKEND="Agg")
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=1200, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(Path(notebook).parent)}}).execute()
    return {nbcell.grade_id(cell) or f"cell {i}": output.get("ename")
            for i, cell in enumerate(nb.cells) for output in cell.get("outputs", []) if output.get("output_type") == "error"}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m grader.decide.tryout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment")
    parser.add_argument("notebook")
    parser.add_argument("--hand-in", help="folder for the handed-in values (default: a new temporary one)")
    parser.add_argument("--reuse", action="store_true", help="decide the values already in --hand-in; run nothing")
    args = parser.parse_args(argv)
    os.environ.setdefault("MNISTLAB_DATA_SOURCE", "offline")  # the pinned data, for the notebook and the grader alike
    hand_in = Path(args.hand_in or tempfile.mkdtemp(prefix="tryout-"))
    hand_in.mkdir(parents=True, exist_ok=True)
    if not args.reuse:
        errors = execute(args.notebook, hand_in)
        for cell, name in errors.items():
            print(f"raised in the kernel: {cell}: {name}")
    from grader.clean import score_submission

    results = score_submission(str(hand_in), args.assignment)
    for r in results:
        figure = "" if r.get("clean") is None else f" clean={r['clean']:.4f} threshold={r['threshold']:.4f}"
        print(f"{'PASS' if r['passed'] else 'FAIL'} {r['cell']} [{r['name']}]{figure}"
              + (f": {r['reason']}" if r.get("reason") else "") + (f" FLAG {r['flag']}" if r.get("flag") else ""))
    print(f"hand-in folder: {hand_in}")
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
