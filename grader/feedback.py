"""`python -m grader feedback ASSIGNMENT`: one HTML page per student and notebook, safe to hand out.

The pages are nbgrader's own feedback (its GenerateFeedback converter: the student's notebook with
the score of every graded cell, read from the gradebook). But an autograded notebook is not safe to
show as it is: its test cells hold the hidden tests (nbgrader restores them before it runs the
notebook), their outputs may print hidden data, and a student's own cell can print them too (the
kernel keeps every cell's source in `In`). So nbgrader is run on *sanitized copies*, in a throw-away
course folder that shares the real gradebook; autograded/ is never modified.

Each copy goes through a pipeline of small steps, like nbgrader's preprocessors, each with one job:

  report_results      test cells: their outputs are replaced by one result block (passed or failed,
                      the grader's own figure of each accuracy check vs its threshold, the reason and
                      the diagnose findings when it failed, and which visible line raised, if one did)
  outputs_as_submitted every other code cell: the outputs it had in the notebook the student handed in
  strip_hidden_tests  test cells: the lines between BEGIN / END HIDDEN TESTS are removed
  redact_hidden_code  every cell: a line of hidden test code found in a source or an output is
                      replaced by "[hidden test code removed]" (defense in depth)
  keep_known_metadata only the metadata nbconvert and nbgrader need (nothing a student stashed there)
  add_header          a first cell saying how to read the page

**Nothing the grader's run printed is shown.** It ran with the hidden tests in the kernel (IPython keeps
every cell's source in `In`), so any output of it, a student's cell or a test's error message, may
carry them in an encoding no redaction finds (base64, pixels of an image, an exception's message).
The page shows what the grader produced (scores, checks, which visible line raised, from the
master's source) and what the student submitted (their cells, with the outputs of their own run,
which never had hidden code). report_results runs first: whether an error came from the visible part
of a cell is read from the cell's source as it ran, hidden tests included. A last check reads the
finished HTML page and refuses to write it (LeakError) if a line of hidden test code is still in it.

The result block lives in grader/result_block.py; what counts as hidden, the redaction and the last
check in grader/hidden.py.

A submission the grader could not run (status "failed" in its .grader.json) gets a short page with
the reason and the score instead: nothing of its notebook is shown.
"""

import copy
import html
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.v4 import new_markdown_cell

from grader import GraderError, nbcell
from grader.course import RECORD, course_directory, read_record
from grader.hidden import (REDACTED, LeakError, assert_no_secrets, hidden_line_numbers, is_test_cell,  # noqa: F401
                           redact, secret_lines, secret_patterns)
from grader.result_block import findings_of, result_block, visible_error  # noqa: F401
from grader.results import SubmissionResult

HEADER = (
    "**Your feedback.** The score of each graded cell is above, next to its link. Your cells show the outputs "
    "of your notebook as you submitted it. Each test cell below shows the grader's result instead of its "
    "output, and the hidden tests are not shown. Where the grader checked a cell itself (in a clean "
    "process, from the values your code handed in, on its own copy of the data), its result is the one "
    "that counts, not what your notebook printed."
)


# --- the sanitizing pipeline: each step takes (notebook, context) and returns the notebook -------

@dataclass
class Context:
    """What the steps know about one notebook of one submission."""

    student: str
    notebook: str
    secrets: list  # secret_lines() of the assignment
    scores: dict = field(default_factory=dict)  # {grade_id: (score, max_score)} from the gradebook
    record: SubmissionResult = None  # the submission's .grader.json (None: none)
    kinds: dict = field(default_factory=dict)  # {check name: "accuracy" | "gain"}
    submitted: object = None  # the notebook as the student handed it in (None: not found)

    def __post_init__(self):
        self.patterns = secret_patterns(self.secrets)
        self.html_patterns = secret_patterns([html.escape(line) for line in self.secrets])  # as text/html shows them


def report_results(nb, ctx):
    """Replace the outputs of every test cell by one result block (see result_block)."""
    checks = ctx.record.checks if ctx.record else []
    notes = ctx.record.cell_notes if ctx.record else {}
    for cell in nb.cells:
        if not is_test_cell(cell):
            continue
        grade_id = nbcell.grade_id(cell)
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        errors.sort(key=lambda o: o.get("ename") != "CellTimeoutError")  # a time-out says most, when there is one
        error = visible_error(cell, errors[0]) if errors else None
        cell.outputs = [result_block(ctx.scores.get(grade_id), [c for c in checks if c.cell == grade_id],
                                     error, notes.get(grade_id), bool(errors), ctx.kinds)]
    return nb


def outputs_as_submitted(nb, ctx):
    """Every code cell but the test cells shows the outputs it had in the submitted notebook, or none.

    Matched by grade id for graded cells, else by cell id; a cell the submission does not have
    (e.g. restored by nbgrader) shows no output. Test cells keep report_results' block."""
    theirs = {cell_key(cell): cell for cell in (ctx.submitted.cells if ctx.submitted else [])}
    for cell in nb.cells:
        if cell.cell_type != "code" or is_test_cell(cell):
            continue
        mine = theirs.get(cell_key(cell))
        cell.outputs = copy.deepcopy(mine.get("outputs", [])) if mine is not None and mine.cell_type == "code" else []
        cell.execution_count = mine.get("execution_count") if mine is not None else None
    return nb


def cell_key(cell):
    grade_id = nbcell.grade_id(cell)
    return ("grade", grade_id) if grade_id else ("id", cell.get("id"))


def strip_hidden_tests(nb, ctx):
    """Remove the hidden test regions (markers included) from every graded cell's source."""
    for cell in nb.cells:
        if nbcell.is_grade(cell):
            hidden = hidden_line_numbers(cell.source)
            cell.source = "\n".join(line for number, line in enumerate(cell.source.split("\n"), 1) if number not in hidden)
    return nb


def redact_hidden_code(nb, ctx):
    """Replace every line of hidden test code found in any source or output by REDACTED."""
    for cell in nb.cells:
        cell.source = redact(cell.source, ctx.patterns)
        for output in cell.get("outputs", []):
            if "text" in output:
                output.text = redact(output.text, ctx.patterns)
            for key in ("ename", "evalue"):
                if key in output:
                    output[key] = redact(output[key], ctx.patterns)
            if "traceback" in output:
                output.traceback = [redact(line, ctx.patterns) for line in output.traceback]
            for mime, value in output.get("data", {}).items():
                if isinstance(value, str) and not mime.startswith("image/"):
                    extra = ctx.html_patterns if mime == "text/html" else []
                    output.data[mime] = redact(value, ctx.patterns + extra)
    return nb


def keep_known_metadata(nb, ctx):
    """Keep only the metadata nbconvert and nbgrader read: a student could stash anything in the
    rest, and nbconvert copies some of it (e.g. widget state) into the page."""
    nb.metadata = nbformat.from_dict({k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")})
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.metadata.items() if k == "nbgrader"})
    return nb


def add_header(nb, ctx):
    """A first cell that says how to read the page, with the grader's notes on graded cells that are
    missing from the notebook (e.g. deleted: no cell below can show them)."""
    notes = ctx.record.cell_notes if ctx.record else {}
    present = {nbcell.grade_id(cell) for cell in nb.cells}
    missing = [f"- `{grade_id}`: {notes[grade_id]}" for grade_id in ctx.scores
               if grade_id in notes and grade_id not in present]
    if missing:
        text = HEADER + "\n\nNotes from the grader on cells missing from your notebook:\n\n" + "\n".join(missing)
    nb.cells.insert(0, new_markdown_cell(text if missing else HEADER))
    return nb


PIPELINE = (report_results, outputs_as_submitted, strip_hidden_tests, redact_hidden_code, keep_known_metadata, add_header)


def sanitize(nb, ctx, steps=None):
    """A copy of the autograded notebook `nb`, run through each step (default: PIPELINE) in turn."""
    nb = copy.deepcopy(nb)
    for step in steps or PIPELINE:
        nb = step(nb, ctx)
    return nb


# --- the course ----------------------------------------------------------------------------------

def masters(cd, assignment):
    """{notebook name: master notebook} of source/<assignment>/."""
    folder = Path(cd.format_path(cd.source_directory, ".", assignment))
    if not folder.is_dir():
        raise GraderError(f"no assignment {assignment!r}: {folder} does not exist")
    return {p.stem: nbformat.read(p, as_version=4) for p in sorted(folder.glob("*.ipynb"))}


def autograded_students(cd, assignment):
    """Students with a .grader.json for `assignment`, sorted."""
    root = Path(cd.root)
    pattern = Path(cd.format_path(cd.autograded_directory, "*", assignment, escape=False)).relative_to(root)
    depth = len(Path(cd.autograded_directory).parts)
    return sorted(p.relative_to(root).parts[depth] for p in root.glob(str(pattern / RECORD)))


def check_kinds(assignment, record):
    """{check name: kind}: the record's own "kind" (every record since the kind was added), else the course's
    table (read only then: it imports PyTorch, which another course's feedback does not need)."""
    kinds = {c.name: c.kind for c in record.checks if c.kind}
    if any(not c.kind for c in record.checks):
        try:
            from grader.checks import CHECKS
        except ImportError:  # another course, without this course's checks table
            CHECKS = {}
        for c in record.checks:
            known = CHECKS.get((assignment, c.name))
            kinds.setdefault(c.name, known.kind if known else "accuracy")
    return kinds


def gradebook_scores(gb, assignment, student, notebook):
    """{grade_id: (score, max_score)} of one submitted notebook, or None if the gradebook lacks it."""
    from nbgrader.api import MissingEntry

    try:
        submitted = gb.find_submission_notebook(notebook, assignment, student)
    except MissingEntry:
        return None
    return {grade.name: (grade.score, grade.max_score) for grade in submitted.grades}


def read_notebook(path):
    """The notebook at `path`, or None if there is none or it cannot be read (its cells then show no output)."""
    try:
        return nbformat.read(path, as_version=4)
    except Exception:
        return None


def failure_page(assignment, student, notebook, record, patterns):
    """The page of a submission that could not be graded: the reason and the score, nothing else."""
    reason = redact(str(record.reason or "unknown"), patterns)
    score, most = record.score or 0, record.max_score
    total = f"{score:g} / {most:g}" if most is not None else f"{score:g}"
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(notebook)}</title></head>\n"
            f"<body style='font-family:sans-serif;max-width:50em;margin:2em auto'>\n"
            f"<h2>{html.escape(assignment)}: {html.escape(notebook)} (Score: {total})</h2>\n"
            f"<p>Your submission could not be graded, so it scores 0 for everything the autograder checks:</p>\n"
            f"<blockquote style='border-left:4px solid #c62828;padding:2px 10px'>{html.escape(reason)}</blockquote>\n"
            f"<p>Run your notebook from top to bottom (Kernel &gt; Restart &amp; Run All) to find the cell that "
            f"causes it, and ask your instructor if you cannot see why.</p>\n</body></html>\n")


def feedback(assignment, course=".", db=None, students=None):
    """Write feedback/<student>/<assignment>/<notebook>.html for each autograded student.

    students: only these (default: everyone with a .grader.json). Returns {student: [html paths]}.
    Raises LeakError, after writing every safe page, if any page would show hidden test code.
    """
    from nbgrader.api import Gradebook
    from nbgrader.apps.api import NbGraderAPI

    cd, config = course_directory(course, db)
    sources = masters(cd, assignment)
    secrets = secret_lines(sources.values())
    patterns = secret_patterns(secrets)
    everyone = autograded_students(cd, assignment)
    wanted = [s for s in everyone if s in students] if students else everyone
    if students and set(students) - set(everyone):
        print(f"no autograded submission of {assignment} from {', '.join(sorted(set(students) - set(everyone)))}")

    written, leaks, skipped = {}, [], []

    def publish(student, notebook, page):
        """Write the page into the course's feedback/, unless the last check finds hidden test code in it."""
        try:
            assert_no_secrets(page, patterns, f"{student}/{assignment}/{notebook}")
        except LeakError as leak:
            leaks.append(str(leak))
            return
        path = Path(cd.format_path(cd.feedback_directory, student, assignment), f"{notebook}.html")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page)
        written.setdefault(student, []).append(str(path))

    with tempfile.TemporaryDirectory(prefix="feedback-") as scratch:
        # A throw-away course: the sanitized copies as its autograded/, the real gradebook.
        scratch_config = copy.deepcopy(config)
        scratch_config.CourseDirectory.root = scratch
        scratch_config.CourseDirectory.db_url = cd.db_url
        scratch_cd = type(cd)(config=scratch_config)
        pending = []  # (student, notebook) pages nbgrader is to make
        with warnings.catch_warnings(), Gradebook(cd.db_url, cd.course_id) as gb:
            warnings.simplefilter("ignore")  # SQLAlchemy's SAWarnings about nbgrader's own session use
            for student in wanted:
                folder = Path(cd.format_path(cd.autograded_directory, student, assignment))
                record = read_record(cd, assignment, student)
                if record.status != "graded":
                    for notebook in sources:
                        publish(student, notebook, failure_page(assignment, student, notebook, record, patterns))
                    continue
                kinds = check_kinds(assignment, record)
                for notebook in sources:
                    path = Path(folder, f"{notebook}.ipynb")
                    scores = gradebook_scores(gb, assignment, student, notebook)
                    if not path.exists() or scores is None:
                        skipped.append(f"{student}/{notebook}: " + ("no autograded notebook" if not path.exists() else
                                                                    "not in the gradebook (run autograde again)"))
                        continue
                    handed_in = Path(cd.format_path(cd.submitted_directory, student, assignment), f"{notebook}.ipynb")
                    ctx = Context(student, notebook, secrets, scores, record, kinds, submitted=read_notebook(handed_in))
                    clean = sanitize(nbformat.read(path, as_version=4), ctx)
                    copy_path = Path(scratch_cd.format_path(scratch_cd.autograded_directory, student, assignment),
                                     f"{notebook}.ipynb")
                    copy_path.parent.mkdir(parents=True, exist_ok=True)
                    nbformat.write(clean, copy_path)
                    pending.append((student, notebook))

        if pending:  # nbgrader's feedback, for every sanitized copy at once
            result = NbGraderAPI(coursedir=scratch_cd, config=scratch_config).generate_feedback(assignment, force=True)
            for student, notebook in pending:
                made = Path(scratch_cd.format_path(scratch_cd.feedback_directory, student, assignment), f"{notebook}.html")
                if not made.exists():
                    skipped.append(f"{student}/{notebook}: nbgrader generate_feedback failed:\n"
                                   f"{result.get('log', '')[-2000:]}{result.get('error', '') or ''}")
                    continue
                publish(student, notebook, made.read_text())

    for line in skipped:
        print(f"SKIPPED {line}")
    if leaks:
        raise LeakError("\n".join(leaks))
    return written
