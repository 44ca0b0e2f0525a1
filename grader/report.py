"""The instructor's class report: one self-contained HTML page per assignment, with plots.

    report("01-softmax", course=".")  ->  <course>/reports/01-softmax.html

Like nbgrader's preprocessors, each part of the page is one small function that takes the class
(plain data, read once) and returns its HTML:

  summary     submissions, graded, failed, flagged, mean and median score
  exercises   per grade cell (code tests and written answers): how many full, partial and zero
              scores, and how many still wait for a human (nbgrader's needs_manual_grade)
  pitfalls    how many submissions hit each mnistlab.diagnose finding, and which of the grader's
              clean checks failed how often
  runs        grading time per submission (graded / failed / flagged) and why the failed ones failed
  flagged     integrity flags, and the checks where the notebook's claim and the grader's own
              measurement disagree

Scores come from the gradebook (nbgrader.api.Gradebook); the rest from the .grader.json record
that `python -m grader autograde` writes next to each autograded submission (grader/autograde.py).
A student with a submission but no record yet is shown as "not graded".

The page shows student ids: it is for the instructor, not for students. Everything a student can
influence (ids, failure reasons, flags, finding names) is escaped with html.escape before it goes
into the page; the plots are PNGs embedded as base64, so the file can be mailed or archived alone.
"""

import base64
import html
import io
import os
import statistics
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import nbformat
from matplotlib.figure import Figure

from grader import GraderError
from grader.nbcell import grade_id
from grader.course import course_directory, read_record, submitted_students

# Colours of a submission's status (the run-time bars) and of a cell's score (the exercise bars).
STATUS_COLOURS = {"graded": "#4c72b0", "flagged": "#dd8452", "failed": "#c44e52", "not graded": "#999999"}
SCORE_COLOURS = {"full": "#55a868", "partial": "#e6b84a", "zero": "#c44e52", "waiting": "#bbbbbb"}


def report(assignment, course=".", db=None, to="reports"):
    """Write the class report of `assignment` to <course>/<to>/<assignment>.html; returns its path."""
    cd, _ = course_directory(course, db)
    folder = Path(to) if os.path.isabs(to) else Path(cd.root, to)
    folder.mkdir(parents=True, exist_ok=True)
    klass = read_class(cd, assignment)
    sections = [summary(klass), exercises(klass), pitfalls(klass), runs(klass), flagged(klass)]
    path = folder / f"{assignment}.html"
    path.write_text(page(f"Class report: {assignment}", klass, sections))
    print(f"wrote {path}")
    return path


# --- reading the class ------------------------------------------------------------------------

def read_class(cd, assignment):
    """The class as plain data: {"assignment", "course", "cells", "students"}.

    cells: [{"notebook", "name", "max_score", "written"}] in notebook order.
    students: {student: {"score", "max_score", "grades": {(notebook, cell): grade}, "record", "status"}}
    where grade = {"score", "max_score", "waiting"} and record is the .grader.json (None if missing).
    """
    from nbgrader.api import Gradebook, MissingEntry

    def blank():
        return {"score": None, "max_score": None, "grades": {}}

    students = {}
    with warnings.catch_warnings(), Gradebook(cd.db_url, cd.course_id) as gb:
        warnings.simplefilter("ignore")  # SQLAlchemy's SAWarnings about nbgrader's own session use
        try:
            master = gb.find_assignment(assignment)
        except MissingEntry:
            raise GraderError(f"the gradebook {cd.db_url} has no assignment {assignment!r}: "
                             f"run `python -m grader autograde {assignment}` first") from None
        cells = [{"notebook": nb.name, "name": cell.name, "max_score": cell.max_score, "written": cell.cell_type != "code"}
                 for nb in master.notebooks for cell in nb.grade_cells + nb.task_cells]
        for submission in master.submissions:
            row = students.setdefault(submission.student.id, blank())
            row["score"], row["max_score"] = submission.score, submission.max_score
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    row["grades"][notebook.name, grade.name] = {"score": grade.score, "max_score": grade.max_score,
                                                                "waiting": grade.needs_manual_grade}
    for student in submitted_students(cd, assignment):  # collected, maybe not graded yet
        students.setdefault(student, blank())
    for student, row in students.items():
        row["record"] = read_record(cd, assignment, student)
        row["status"] = status(row["record"])
    return {"assignment": assignment, "course": cd.course_id, "cells": in_notebook_order(cd, assignment, cells),
            "students": dict(sorted(students.items()))}


def status(record):
    """"failed", "flagged", "graded" or "not graded" (no record: autograde has not seen it)."""
    if record is None:
        return "not graded"
    if record.status == "failed":
        return "failed"
    return "flagged" if record.flags else "graded"


def in_notebook_order(cd, assignment, cells):
    """`cells` in the order they appear in the source notebooks (the gradebook keeps no order)."""
    position = {}
    for cell in cells:
        path = Path(cd.format_path(cd.source_directory, ".", assignment), cell["notebook"] + ".ipynb")
        if cell["notebook"] not in position and path.exists():
            ids = [grade_id(c) for c in nbformat.read(path, as_version=4).cells]
            position[cell["notebook"]] = {name: i for i, name in enumerate(ids) if name}
    return sorted(cells, key=lambda c: (c["notebook"], position.get(c["notebook"], {}).get(c["name"], 10**6), c["name"]))


def checks(klass):
    """(student, CheckResult) for every clean check in the records."""
    return [(student, check) for student, row in klass["students"].items() if row["record"]
            for check in row["record"].checks]


# --- the sections -----------------------------------------------------------------------------

def summary(klass):
    """One paragraph: how many submissions in each state, and the score's mean and median."""
    rows = klass["students"].values()
    count = Counter(row["status"] for row in rows)
    scored = [row for row in rows if row["score"] is not None]
    parts = [f"{len(klass['students'])} submission(s): {count['graded'] + count['flagged']} graded, "
             f"{count['failed']} failed, {count['flagged']} flagged"]
    if count["not graded"]:
        parts[0] += f", {count['not graded']} not graded yet"
    if scored:
        scores, top = [row["score"] for row in scored], max(row["max_score"] for row in scored)
        parts.append(f"Score of the {len(scored)} in the gradebook (failed ones score 0): "
                     f"mean {statistics.mean(scores):.1f} / {top:g}, median {statistics.median(scores):.1f} / {top:g}")
    waiting = [g for row in scored for g in row["grades"].values() if g["waiting"]]
    if waiting:
        submissions = sum(any(g["waiting"] for g in row["grades"].values()) for row in scored)
        parts.append(f"{len(waiting)} answer(s) in {submissions} submission(s) still wait for manual grading "
                     f"(up to {sum(g['max_score'] for g in waiting):g} points, not in these scores)")
    return section("summary", "Summary", "<p class='summary'>" + ". ".join(html.escape(p) for p in parts) + ".</p>")


def outcome(grade):
    """A grade in words: "waiting" (for a human), "full", "partial" or "zero"."""
    if grade["waiting"]:
        return "waiting"
    if grade["score"] >= grade["max_score"] > 0:
        return "full"
    return "partial" if grade["score"] > 0 else "zero"


def exercises(klass):
    """Per grade cell: a stacked bar of full / partial / zero / waiting, and the numbers in a table."""
    cells = klass["cells"]
    if not cells:
        return section("exercises", "Scores per exercise", "<p>The assignment has no grade cells.</p>")
    notes = Counter(cell for row in klass["students"].values() if row["record"] for cell in row["record"].cell_notes)
    counts, rows = [], []
    for cell in cells:
        key = cell["notebook"], cell["name"]
        grades = [row["grades"][key] for row in klass["students"].values() if key in row["grades"]]
        count = Counter(outcome(g) for g in grades)
        counts.append(count)
        done = [g["score"] for g in grades if not g["waiting"]]
        rows.append([label(cell, klass, kind=False), "written" if cell["written"] else "code", f"{cell['max_score']:g}",
                     f"{statistics.mean(done):.2f}" if done else "—", *(str(count[k]) for k in SCORE_COLOURS),
                     str(notes[cell["name"]])])

    fig = Figure(figsize=(7, 0.9 + 0.35 * len(cells)))
    ax = fig.subplots()
    names = [label(cell, klass) for cell in cells]
    left = [0] * len(cells)
    for kind, colour in SCORE_COLOURS.items():
        widths = [count[kind] for count in counts]
        ax.barh(names, widths, left=left, color=colour, label=kind)
        left = [a + b for a, b in zip(left, widths)]
    ax.invert_yaxis()  # first cell on top, as in the notebook
    ax.set_xlabel("submissions")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, fontsize=8)
    body = image(fig, "score outcome per grade cell")
    body += table(["cell", "kind", "max", "mean (graded)", "full", "partial", "zero", "waiting for a human",
                   "changed by the grader"], rows)
    if any(count["waiting"] for count in counts):
        body += ("<p class='note'>Cells with submissions <em>waiting for a human</em> need manual grading "
                 "(nbgrader formgrader) before their scores are final.</p>")
    return section("exercises", "Scores per exercise", body)


def label(cell, klass, kind=True):
    """The cell's name, with its notebook when the assignment has several (and "(written)" if `kind`)."""
    several = len({c["notebook"] for c in klass["cells"]}) > 1
    return (f"{cell['notebook']}/" if several else "") + cell["name"] + (" (written)" if kind and cell["written"] else "")


def pitfalls(klass):
    """How many submissions hit each diagnose finding (a bar chart), and which clean checks failed."""
    hits, failed, checked = defaultdict(set), defaultdict(set), defaultdict(set)
    cell_of = {}
    for student, check in checks(klass):
        for finding in check.findings or []:
            hits[finding.get("name", "?")].add(student)  # once per submission, however many checks found it
        checked[check.name].add(student)
        cell_of[check.name] = check.cell
        if not check.passed:
            failed[check.name].add(student)

    body = ""
    if hits:
        ranked = sorted(hits, key=lambda name: (-len(hits[name]), name))
        fig = Figure(figsize=(7, 0.9 + 0.35 * len(ranked)))
        ax = fig.subplots()
        ax.barh(ranked, [len(hits[name]) for name in ranked], color="#8172b3")
        ax.invert_yaxis()  # the most common first
        ax.set_xlabel("submissions")
        ax.xaxis.get_major_locator().set_params(integer=True)
        body += image(fig, "submissions per diagnose finding")
        body += table(["finding", "submissions", "students"],
                      [[name, str(len(hits[name])), ", ".join(sorted(hits[name]))] for name in ranked])
    else:
        body += "<p>No diagnose findings: every checked model reached its threshold (or none was checked).</p>"
    body += "<h3>Clean checks that failed</h3>"
    if failed:
        ranked = sorted(failed, key=lambda name: (-len(failed[name]), name))
        body += table(["check", "cell", "failed", "checked", "students"],
                      [[name, cell_of[name] or "", str(len(failed[name])), str(len(checked[name])),
                        ", ".join(sorted(failed[name]))] for name in ranked])
    elif checked:
        body += f"<p>None of the {sum(len(s) for s in checked.values())} clean check(s) failed.</p>"
    else:
        body += "<p>The records hold no clean checks (graded before the grader re-measured, or none in this assignment).</p>"
    return section("pitfalls", "Pitfalls", body)


def runs(klass):
    """Grading time per submission (coloured by status), and why each failed submission failed."""
    students = klass["students"]
    names = list(students)
    seconds = [(students[s]["record"].seconds or 0) if students[s]["record"] else 0 for s in names]
    colours = [STATUS_COLOURS[students[s]["status"]] for s in names]

    fig = Figure(figsize=(min(max(6, 0.3 * len(names)), 16), 3.5))
    ax = fig.subplots()
    ax.bar(range(len(names)), seconds, color=colours)
    if len(names) <= 60:  # more ids than that do not fit: the tables name them
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    else:
        ax.set_xticks([])
    ax.set_ylabel("seconds")
    shown = [s for s in STATUS_COLOURS if any(row["status"] == s for row in students.values())]
    for kind in shown:  # legend entries only for the states present
        ax.bar([0], [0], color=STATUS_COLOURS[kind], label=kind)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    body = image(fig, "grading time per submission")

    failed = [(s, students[s]["record"]) for s in names if students[s]["status"] == "failed"]
    if failed:
        body += "<h3>Failed submissions</h3>" + table(
            ["student", "reason", "seconds", "peak MiB"],
            [[s, r.reason or "", number(r.seconds), number(r.peak_mib)] for s, r in failed])
    else:
        body += "<p>No submission failed.</p>"
    return section("runs", "Run time and failures", body)


def flagged(klass):
    """Flagged submissions: the flags, and each check whose claimed and clean figures disagree."""
    rows = []
    for student, row in klass["students"].items():
        record = row["record"]
        if not record or not record.flags:
            continue
        differ = [f"{c.name}: claimed {c.shown('claimed')}, clean {c.shown('clean')}, threshold {c.shown('threshold')}"
                  for c in record.checks if not c.agrees()]
        rows.append([student, list(record.flags), differ or ["(none)"]])
    if not rows:
        return section("flagged", "Flagged submissions", "<p>No submission was flagged.</p>")
    body = ("<p>Where the notebook's claim and the grader's clean measurement differ, the clean one counts.</p>"
            + table(["student", "flags", "claimed vs clean (threshold)"], rows))
    return section("flagged", "Flagged submissions", body)


# --- HTML and figures -------------------------------------------------------------------------

def image(fig, alt):
    """The figure as an <img> with the PNG inline (base64): the page needs no other file."""
    # A matplotlib Figure made directly (not with pyplot) renders with Agg and is not kept in
    # pyplot's list of open figures: nothing to close, nothing leaks over a long run of reports.
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def table(header, rows):
    """An HTML table; every cell is escaped here. A cell that is a list becomes one line per item."""
    def cell(value):
        return "<br>".join(html.escape(str(v)) for v in value) if isinstance(value, list) else html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def section(name, title, body):
    return f'<section id="{name}"><h2>{html.escape(title)}</h2>{body}</section>'


def number(value):
    return "—" if value is None else f"{value:g}"


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } .meta, .note { color: #666; font-size: 0.9em; }
section { margin-top: 2em; } img { max-width: 100%; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
"""


def page(title, klass, sections):
    meta = f"course {klass['course']}, {len(klass['students'])} submission(s), made {time.strftime('%Y-%m-%d %H:%M %Z')}"
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p class='meta'>{html.escape(meta)}</p>"
            + "\n".join(sections) + "</body></html>\n")
