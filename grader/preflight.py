"""Stage 1 of grading one submission, before nbgrader: what nbgrader cannot tell a student.

A notebook it cannot read or of the wrong name is a *problem* (nothing can be graded: the reason says
what to do); grade cells deleted, retyped or duplicated, and duplicated cell ids, are *notes* (the
notebook is repaired as nbgrader would, and the student is told). Runs on the worker, on bytes only.
"""

from pathlib import Path

import nbformat

from grader import nbcell

def check_notebooks(job):
    """Look at the submitted notebooks before grading. Returns (files to grade, problems, notes).

    problems (nothing can be graded): no notebook of the assignment's name, one that is not a notebook.
    notes {grade id: text}: grade cells deleted, retyped or duplicated (nbgrader restores or drops them).
    Duplicated cell ids are renumbered (the notebook format forbids them; JupyterLab never makes them); a notebook
    of nbformat 4.0-4.4 has no cell ids, and is left without.
    """
    files, problems, notes = dict(job["files"]), [], {}
    for refused in job.get("refused", []):  # links, special and oversize files: never copied (grader/course.py)
        notes[f"refused:{refused.split(':', 1)[0]}"] = f"not graded: {refused}"
    submitted = {Path(name).name: name for name in files if name.startswith("submitted/") and name.endswith(".ipynb")}
    masters = {Path(name).name: name for name in files if name.startswith("source/") and name.endswith(".ipynb")}
    missing = sorted(set(masters) - set(submitted))
    if masters and len(missing) == len(masters):
        found = ", ".join(sorted(submitted)) or "nothing"
        problems.append(f"no notebook named {' or '.join(missing)} in the submission (found: {found}); "
                        "submit the assignment's notebook under its own name")
        return files, problems, notes
    for name in missing:
        notes[name] = f"{name} was not submitted: its exercises score 0"
    for name, path in submitted.items():
        if name not in masters:
            continue
        try:
            nb = nbformat.reads(files[path].decode("utf-8"), as_version=4)
        except Exception as error:
            problems.append(f"{name} is not a readable notebook ({type(error).__name__}: {str(error)[:150]}); "
                            "download it again from JupyterLab (File > Download) and resubmit")
            continue
        master = nbformat.reads(files[masters[name]].decode("utf-8"), as_version=4)
        notes.update(grade_cell_notes(master, nb))
        changed = drop_duplicate_grade_cells(nb)
        # Cell ids exist from nbformat 4.5 on: a 4.0-4.4 notebook has none, and must not get any (it would no
        # longer be valid). Only ids a notebook has can be duplicated.
        ids = [cell["id"] for cell in nb.cells if cell.get("id") is not None] if has_cell_ids(nb) else []
        if len(set(ids)) < len(ids):
            import uuid

            seen = set()
            for cell in nb.cells:
                if cell.get("id") in seen:
                    cell["id"] = uuid.uuid4().hex[:8]
                seen.add(cell.get("id"))
            changed = True
            notes[f"{name}:cell-ids"] = "duplicated cell ids were renumbered before grading (no points lost)"
        if changed:
            files[path] = nbformat.writes(nb).encode()
    return files, problems, notes


def has_cell_ids(nb):
    """True for a notebook whose format has cell ids (nbformat 4.5 and later)."""
    return (nb.get("nbformat", 4), nb.get("nbformat_minor", 0)) >= (4, 5)


def drop_duplicate_grade_cells(nb):
    """Copies of a graded cell become plain cells (nbgrader itself would reject the notebook). True if any."""
    seen, changed = set(), False
    for cell in nb.cells:
        grade_id = nbcell.grade_id(cell)
        if grade_id and grade_id in seen:
            del cell["metadata"]["nbgrader"]
            changed = True
        seen.add(grade_id)
    return changed


def grade_cell_notes(master, submitted):
    """{grade id: what happened to it} for grade cells deleted, retyped or duplicated in `submitted`."""
    def grade_cells(nb):
        return [(nbcell.grade_id(c), c.cell_type) for c in nb.cells if nbcell.is_grade(c)]

    theirs = grade_cells(submitted)
    notes = {}
    for grade_id, cell_type in grade_cells(master):
        mine = [t for g, t in theirs if g == grade_id]
        if not mine:
            notes[grade_id] = "this graded cell was deleted from the notebook: it scores 0"
        elif len(mine) > 1:
            notes[grade_id] = f"this graded cell is duplicated ({len(mine)} copies): the first copy was graded, the others ignored"
        elif mine[0] != cell_type:
            notes[grade_id] = f"this graded cell was changed from {cell_type} to {mine[0]}; the original was restored"
    return notes
