"""Stage 3 of grading one submission: the clean re-measurement, in a fresh sandboxed process that never
ran student code (grader/clean.py scores the handed-in models; grader/checks.py says which).

  clean_checks  run the scoring child, read its results (or say why it could not score)
  apply_checks  the clean result counts: a cell whose check failed scores 0, with the reason
  unconfirmed   flags for cells the kernel passed but the grader measured a fail
"""

from pathlib import Path

import nbformat

from grader import sandbox

def clean_checks(job, scratch):
    """Score the handed-in models in a new sandboxed child that never ran student code."""
    from grader.checks import checks_of
    from grader.execute import read_json, read_text  # (at call time: execute imports this module)

    if not checks_of(job["assignment"]):
        return []
    cells = sorted(grade_ids({n: d for n, d in job["files"].items() if n.startswith("source/")}) - {None})
    if not any(check.cell in cells for check in checks_of(job["assignment"]).values()):
        return []
    run = {"scratch": scratch, "kind": "score", "log": "clean.log", "entry": "grader.clean:score_submission",
           "kwargs": {"assignment": job["assignment"], "without": job.get("baselines"), "cells": cells},
           "result": "clean.json", "data_dir": job.get("data_dir"), "isolate_network": True}
    with sandbox.zygote() as helper:
        exitcode, killed, _ = helper.run(run, job["timeout"], job["memory"])
    results = read_json(Path(scratch, "grader", "clean.json"))
    if killed or exitcode != 0 or not isinstance(results, list):
        why = killed or read_text(Path(scratch, "grader", "clean.log")).strip().splitlines()[-1:] or [f"exit code {exitcode}"]
        why = why if isinstance(why, str) else why[0]
        return [{"name": name, "cell": check.cell, "threshold": None, "claimed": None, "clean": None, "pool": None,
                 "passed": False, "findings": None, "kind": check.kind,
                 "reason": f"the grader could not score the handed-in model: {why[:300]}",
                 "flag": f"{name}: the handed-in model could not be scored ({why[:200]})"}
                for name, check in sorted(checks_of(job["assignment"]).items()) if check.cell in cells]
    return results


def apply_checks(scores, checks, notes):
    """The clean result counts: a grade cell with a failed check scores 0, with the reason in its note."""
    notes = dict(notes)
    failed_cells = {}
    for check in checks:
        if not check["passed"]:
            failed_cells.setdefault(check["cell"], []).append(f"{check['name']}: {check['reason']}")
    for nb in scores["notebooks"]:
        for grade in nb["grades"]:
            if grade["name"] in failed_cells:
                grade["auto_score"] = 0.0
                notes[grade["name"]] = "the grader's own measurement: " + "; ".join(failed_cells[grade["name"]])
    return scores, notes


def unconfirmed(checks, graded_files, errors):
    """Flags for cells the kernel passed (no error, see cell_errors) but the clean measurement failed."""
    present = grade_ids(graded_files)
    return [f"{c['cell']}: passed in the student's kernel, but the grader measured a fail ({c['reason']})"
            for c in checks if not c["passed"] and c["cell"] in present and c["cell"] not in errors]


def grade_ids(files):
    ids = set()
    for name, data in files.items():
        if name.endswith(".ipynb"):
            for cell in nbformat.reads(data.decode(), as_version=4).cells:
                ids.add(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"))
    return ids
