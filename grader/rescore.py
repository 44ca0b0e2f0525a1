"""Stage 3 of grading one submission: the clean verdict, in a fresh sandboxed process that never ran student
code (grader/clean.py scores the handed-in models, grader/checks.py says which; grader/decide decides every
other test cell from the values it handed in).

  clean_checks  run the scoring child, read its results (or say why it could not score)
  apply_checks  the clean verdict counts: a checked cell scores its points if every check passed, else 0
  unconfirmed   flags for cells where the kernel's verdict and the grader's differ
"""

import re
from pathlib import Path

import nbformat

from grader import nbcell, sandbox
from grader.results import CheckResult

# What every scoring child imports (PyTorch: seconds), imported once by the zygote the scoring children come from.
CLEAN_PRELOAD = ("torch", "grader.clean", "grader.decide", "grader.handin", "mnistlab.train", "mnistlab.thresholds")


def clean_checks(job, scratch):
    """Score the handed-in models, and decide the test cells from their handed-in values (grader/decide),
    in a new sandboxed child that never ran student code."""
    from grader.checks import checks_of
    from grader.decide import DECIDERS, cells_of
    from grader.execute import read_json, read_text  # (at call time: execute imports this module)

    assignment = job["assignment"]
    if not checks_of(assignment) and assignment not in DECIDERS:
        return []
    masters = {n: d for n, d in job["files"].items() if n.startswith("source/")}
    cells, decided = sorted(grade_ids(masters) - {None}), sorted(handed_in_cells(masters))
    run = {"scratch": scratch, "kind": "score", "log": "clean.log", "entry": "grader.clean:score_submission",
           "kwargs": {"assignment": assignment, "without": job.get("baselines"), "cells": cells, "decided": decided},
           "result": "clean.json", "data_dir": job.get("data_dir"), "isolate_network": True}
    with sandbox.zygote(CLEAN_PRELOAD) as helper:
        exitcode, killed, _ = helper.run(run, job["timeout"], job["memory"])
    results = read_json(Path(scratch, "grader", "clean.json"))
    if killed or exitcode != 0 or not isinstance(results, list):
        why = killed or read_text(Path(scratch, "grader", "clean.log")).strip().splitlines()[-1:] or [f"exit code {exitcode}"]
        why = why if isinstance(why, str) else why[0]
        named = [(name, check.cell) for name, check in sorted(checks_of(assignment).items())]
        named += [(cell, cell) for cell in cells_of(assignment) if cell in decided]
        return [CheckResult(name=name, cell=cell, kind="test" if name == cell else "accuracy",
                            reason=f"the grader could not check the handed-in values: {why[:300]}",
                            flag=f"{name}: the handed-in values could not be checked ({why[:200]})").to_json()
                for name, cell in named if cell in cells]
    return results


def apply_checks(scores, checks, notes):
    """The clean verdict counts, both ways: a grade cell the grader checked scores its full points when every
    check of it passed, 0 otherwise (with the reason in its note). Cells it did not check keep nbgrader's score."""
    notes = dict(notes)
    verdicts = {}
    for check in map(CheckResult.from_json, checks):
        verdicts.setdefault(check.cell, []).append(check)
    for nb in scores["notebooks"]:
        for grade in nb["grades"]:
            mine = verdicts.get(grade["name"])
            if not mine:
                continue
            failed = [f"{c.name}: {c.reason}" if c.name != c.cell else c.reason for c in mine if not c.passed]
            grade["auto_score"] = 0.0 if failed else float(grade["max_score"] or 0)
            if failed:
                notes[grade["name"]] = "the grader's own check: " + "; ".join(failed)
    return scores, notes


def unconfirmed(checks, graded_files, errors):
    """Flags for the cells where the kernel's verdict (an error in the cell, see cell_errors) and the grader's differ."""
    present = grade_ids(graded_files)
    by_cell = {}
    for c in map(CheckResult.from_json, checks):
        by_cell.setdefault(c.cell, []).append(c)
    flags = []
    for cell, mine in sorted(by_cell.items()):
        failed = [c for c in mine if not c.passed]
        if failed and cell in present and cell not in errors:
            flags += [f"{cell}: passed in the student's kernel, but the grader's check failed ({c.reason})" for c in failed]
        elif not failed and cell in errors:
            flags.append(f"{cell}: failed in the student's kernel ({errors[cell]}), but passed the grader's own check, "
                         "which counts")
    return flags


HAND_IN_CALL = re.compile(r"""\bhand_in(?:_model)?\(\s*["']([A-Za-z0-9_][A-Za-z0-9_-]*)["']""")


def handed_in_cells(masters):
    """The grade cells whose hidden test hands values in (`course.hand_in("<cell>", ...)` in the master's own
    source): those are decided by grader/decide. The master says which; a student's notebook has no say."""
    cells = set()
    for name, data in masters.items():
        if name.endswith(".ipynb"):
            for cell in nbformat.reads(data.decode(), as_version=4).cells:
                grade_id = nbcell.grade_id(cell)
                if grade_id and grade_id in HAND_IN_CALL.findall(cell.source):
                    cells.add(grade_id)
    return cells


def grade_ids(files):
    ids = set()
    for name, data in files.items():
        if name.endswith(".ipynb"):
            for cell in nbformat.reads(data.decode(), as_version=4).cells:
                ids.add(nbcell.grade_id(cell))
    return ids
