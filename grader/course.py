"""The course folder and its gradebook, as nbgrader lays them out: the only module of the grader that
reads or writes them (autograde's coordinator, feedback, report, export and collect all go through it).

  course_directory    nbgrader's CourseDirectory and config, from the course's nbgrader_config.py
  submitted_students  who submitted an assignment; files_under / fingerprint: a folder's files and hash
  template_gradebook  a one-assignment gradebook each grading task starts from
  record / read_record  one graded submission into autograded/<s>/<a>/ and the gradebook (RECORD); record is
                      safe with several coordinators writing one gradebook at once (each write is retried)
  graded_in_gradebook / holds  what the gradebook in use holds, and whether it holds what a RECORD says
  hidden_paths        what a student's kernel must not see of this machine
The database behind the gradebook (drivers, retried writes) is grader/gradebook.py's.
"""

import errno
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from grader import GraderError, sandbox
from grader.build import tool_env
from grader.gradebook import WRITE_TRIES, database_url, gradebook, quick_alembic_version, retried, shown
from grader.results import SubmissionResult

RECORD = ".grader.json"
def course_directory(course=".", db=None):
    """nbgrader's view of the course folder: (CourseDirectory, config) from its nbgrader_config.py."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    # nbgrader runs `alembic` (next to this Python) when it creates a gradebook: put it on PATH.
    if str(Path(sys.executable).parent) not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = tool_env()["PATH"]
    root = os.path.abspath(course)
    if not os.path.isdir(root):
        raise GraderError(f"no course folder {root}: pass --course PATH (the folder with nbgrader_config.py)")
    config = Config()
    if os.path.exists(os.path.join(root, "nbgrader_config.py")):
        config = PyFileConfigLoader("nbgrader_config.py", path=root).load_config()
    config.CourseDirectory.root = root
    if db:
        config.CourseDirectory.db_url = db
    cd = CourseDirectory(config=config)
    url = database_url(cd.db_url)
    if url != cd.db_url:
        config.CourseDirectory.db_url = cd.db_url = url
    return cd, config


def submitted_students(cd, assignment):
    """Students with a submitted/<student>/<assignment>/ folder, sorted."""
    root = Path(cd.root)
    pattern = Path(cd.format_path(cd.submitted_directory, "*", assignment, escape=False)).relative_to(root)
    depth = len(Path(cd.submitted_directory).parts)  # submitted/<student>/...: the student's part of the path
    return sorted(p.relative_to(root).parts[depth] for p in root.glob(str(pattern)) if p.is_dir())


MAX_FILE = 100 * 2**20  # bytes: a submitted file larger than this (or a sparse file claiming to be) is refused
MAX_GRADED_NOTEBOOK = 800 * 2**20  # bytes: a graded notebook nbgrader wrote (its outputs are trimmed once read)


def files_under(folder, refused=None, notebooks_up_to=MAX_FILE):
    """{relative path: bytes} of the regular files under `folder` (hidden files and checkpoints skipped).

    Never follows a link: links, special files (pipes, devices) and files over MAX_FILE (notebooks: over
    `notebooks_up_to`) are left out, and, with a list as `refused`, each is added to it as "path: why"."""
    folder, files = Path(folder), {}
    for root, dirs, names in os.walk(folder):  # os.walk does not enter linked folders
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names) + [d for d in dirs if (here / d).is_symlink()]:
            path = here / name
            relative = str(path.relative_to(folder))
            if name.startswith(".") and not path.is_symlink():
                continue
            why = problem_with(path, notebooks_up_to if name.endswith(".ipynb") else MAX_FILE)
            if why and refused is not None:
                refused.append(f"{relative}: {why}")
            elif not why and not path.is_dir():
                files[relative] = path.read_bytes()
    return dict(sorted(files.items()))


def problem_with(path, limit=MAX_FILE):
    """Why a submitted file is refused (a link, not a regular file, over `limit` bytes), or None."""
    import stat

    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        return "a link (the grader never follows a student's links): submit the file itself"
    if stat.S_ISDIR(info.st_mode):
        return None
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a pipe, socket or device)"
    if info.st_size > limit:
        return f"{info.st_size / 2**20:,.0f} MiB, over the {limit // 2**20} MiB a file may have here"
    return None


def fingerprint(*file_sets):
    digest = hashlib.sha256()
    for files in file_sets:
        for name, data in sorted(files.items()):
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def template_gradebook(cd, config, assignment):
    """A fresh SQLite gradebook holding only `assignment`, made by nbgrader's generate_assignment.

    Returns its bytes (sent to every task). The real gradebook gets the assignment the same way if
    it does not know it yet. The generated student version goes to a throw-away folder.
    """
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.apps.api import NbGraderAPI

    quick_alembic_version()

    def generate(db_url, release):
        course = type(cd)(config=config)
        course.db_url, course.release_directory = db_url, release
        result = NbGraderAPI(coursedir=course, config=config).generate_assignment(assignment, force=True, create=True)
        if not result["success"]:
            raise GraderError(f"nbgrader generate_assignment {assignment} failed:\n{result.get('log', '')}{result.get('error', '')}")

    def known():  # (whether the real gradebook has the assignment, its due date)
        with gradebook(cd.db_url, cd.course_id) as gb:
            try:
                found = gb.find_assignment(assignment)
                return bool(found.notebooks), found.duedate
            except MissingEntry:
                return False, None

    with tempfile.TemporaryDirectory() as scratch:
        # Another coordinator may be adding the assignment at the same time: whoever fails looks again.
        for attempt in range(1, WRITE_TRIES + 1):
            there, duedate = retried(f"the assignment {assignment}", cd.db_url, known)
            if there:
                break
            try:
                generate(cd.db_url, os.path.join(scratch, f"real-release-{attempt}"))
            except GraderError:
                if attempt == WRITE_TRIES:
                    raise
                time.sleep(random.uniform(0.02, 0.1) * 2 ** attempt)
        path = os.path.join(scratch, "template.db")
        generate(f"sqlite:///{path}", os.path.join(scratch, "release"))
        with Gradebook(f"sqlite:///{path}", cd.course_id) as gb:  # late penalties need the due date
            gb.update_or_create_assignment(assignment, duedate=duedate)
        return Path(path).read_bytes()


def read_record(cd, assignment, student):
    """The RECORD of one submission as a SubmissionResult, or None if it has not been graded (or recorded)."""
    path = Path(cd.format_path(cd.autograded_directory, student, assignment), RECORD)
    if not path.exists():
        return None
    return SubmissionResult.from_json(dict(json.loads(path.read_text()), student=student, assignment=assignment))


def record(cd, result):
    """Write one result (a SubmissionResult) into the gradebook, then into autograded/<s>/<a>/ (the folder and its RECORD at once).

    Safe with other coordinators writing the same gradebook and course folder at the same time: the
    gradebook write is retried when it meets another writer (retried), and the folder is made aside and
    moved into place whole. Raises GraderError if the gradebook write still fails: nothing is then written
    to autograded/, so a re-run grades the submission again. Returns the RECORD, as read_record reads it."""
    folder = Path(cd.format_path(cd.autograded_directory, result.student, result.assignment))
    written = retried(f"{result.assignment}/{result.student}", cd.db_url, lambda: write_grades(cd, result))
    summary = replace(result, **written, graded_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), scores=None, files={}, log_tail="")
    if result.status == "graded":
        files = result.files
    else:  # keep the student's files next to the reason, for whoever looks at it by hand
        files = files_under(Path(cd.format_path(cd.submitted_directory, result.student, result.assignment)))
    files = dict(files, **{RECORD: json.dumps(summary.to_json(), indent=1).encode()})
    replace_folder(folder, files)
    return summary


def write_grades(cd, result):
    """One result (a SubmissionResult) into the gradebook, in one session: the student and the submission made
    if missing. Returns what the RECORD keeps of it: score, max_score, manual_pending and auto_scores."""
    assignment, student = result.assignment, result.student
    with gradebook(cd.db_url, cd.course_id) as gb:
        gb.update_or_create_student(student)
        timestamp = (result.scores or {}).get("timestamp")
        submission = gb.update_or_create_submission(assignment, student, **({"timestamp": timestamp} if timestamp else {}))
        if result.status == "graded":
            for nb in result.scores["notebooks"]:
                notebook = gb.find_submission_notebook(nb["name"], assignment, student)
                notebook.late_submission_penalty = nb["late_submission_penalty"]
                for g in nb["grades"]:
                    grade = gb.find_grade(g["name"], nb["name"], assignment, student)
                    score = g["auto_score"]  # what the sandbox reports, kept within the cell's points
                    score = None if score is None else min(max(float(score), 0.0), float(grade.max_score))
                    grade.auto_score, grade.needs_manual_grade = score, bool(g["needs_manual_grade"])
                for c in nb["comments"]:
                    gb.find_comment(c["name"], nb["name"], assignment, student).auto_comment = c["auto_comment"]
        else:  # nothing was graded: 0 for every automatic test, the reason in every answer's comment
            for notebook in submission.notebooks:
                for grade in notebook.grades:  # written answers (markdown) still wait for a human
                    grade.auto_score, grade.needs_manual_grade = 0.0, grade.cell.cell_type != "code"
                for comment in notebook.comments:
                    comment.auto_comment = f"Not graded: {result.reason}"
        gb.db.commit()
        grades = [(nb.name, g) for nb in submission.notebooks for g in nb.grades]
        return {"score": submission.score, "max_score": submission.max_score,
                "manual_pending": sum(g.max_score for _, g in grades if g.needs_manual_grade),
                "auto_scores": {f"{name}/{g.name}": g.auto_score for name, g in sorted(grades, key=lambda x: (x[0], x[1].name))}}


def replace_folder(folder, files):
    """Make `folder` hold exactly `files` ({relative path: bytes}), all at once: they are written into a
    hidden folder beside it, which then takes its place (a rename). Another coordinator doing the same
    at the same time leaves one complete folder, never a mix of both or half of one."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        for name, data in files.items():
            Path(staging, name).parent.mkdir(parents=True, exist_ok=True)
            Path(staging, name).write_bytes(data)
        for _ in range(20):
            try:
                os.rename(staging, folder)  # atomic; fails while `folder` is there and not empty
                return
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                if not folder.exists():
                    continue
            old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(folder, old)
            except FileNotFoundError:  # another coordinator moved it away first
                continue
            shutil.rmtree(old, ignore_errors=True)
        raise GraderError(f"could not replace {folder}: other processes kept writing it")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def graded_in_gradebook(cd, assignment):
    """{student: {"notebook/cell": automatic score}} of the submissions of `assignment` that the gradebook in
    use holds with a grade for every graded cell of the assignment ({} if it does not know the assignment)."""
    from nbgrader.api import BaseCell, Grade, MissingEntry, Notebook, SubmittedAssignment, SubmittedNotebook
    from sqlalchemy.exc import DBAPIError

    try:
        with gradebook(cd.db_url, cd.course_id) as gb:
            try:
                found = gb.find_assignment(assignment)
            except MissingEntry:
                return {}
            cells = {f"{nb.name}/{c.name}" for nb in found.notebooks for c in [*nb.grade_cells, *nb.task_cells]}
            rows = (gb.db.query(SubmittedAssignment.student_id, Notebook.name, BaseCell.name, Grade.auto_score)
                    .select_from(Grade)
                    .join(SubmittedNotebook, Grade.notebook_id == SubmittedNotebook.id)
                    .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
                    .join(Notebook, SubmittedNotebook.notebook_id == Notebook.id)
                    .join(BaseCell, Grade.cell_id == BaseCell.id)
                    .filter(SubmittedAssignment.assignment_id == found.id)).all()
    except DBAPIError as error:
        raise GraderError(f"cannot read the gradebook {shown(cd.db_url)}: {type(error).__name__}: "
                          f"{(str(error).strip().splitlines() or [''])[0][:300]}") from None
    held = {}
    for student, notebook, cell, score in rows:
        held.setdefault(student, {})[f"{notebook}/{cell}"] = score
    return {student: grades for student, grades in held.items() if cells and set(grades) >= cells}


def holds(previous, grades):
    """Whether the gradebook's grades of one submission (from graded_in_gradebook, or None) are those its
    RECORD `previous` says were written: the same automatic score in every graded cell."""
    if not grades:
        return False
    expected = previous.auto_scores
    if expected is None:  # a record written before records kept the scores: any automatic score will do
        return any(score is not None for score in grades.values())
    return set(expected) == set(grades) and all(same_score(expected[cell], grades[cell]) for cell in expected)


def same_score(a, b):
    return a is None and b is None or (a is not None and b is not None and abs(a - b) < 1e-9)


def data_dir():
    """The grader's data folder (mnistlab.data.data_dir()): sandboxes read the data from there."""
    from mnistlab.data import data_dir as folder

    return folder()


def hidden_paths(cd):
    """What the student's kernel must not see (grader/jail.py covers them): the course folder (everyone's
    submissions, the gradebook), a gradebook kept elsewhere, and this checkout's masters and solutions."""
    paths = [os.path.abspath(cd.root)]
    if cd.db_url.startswith("sqlite:///"):
        paths.append(os.path.abspath(cd.db_url[len("sqlite:///"):]))
    checkout = Path(__file__).resolve().parent.parent
    paths += [str(checkout / name) for name in ("source", "solutions", "build") if (checkout / name).exists()]
    # A folder holding what the kernel runs on (a course kept in this checkout, with its .venv) is not
    # hidden whole, only its other entries.
    hidden = set()
    for path in map(os.path.realpath, paths):
        if not sandbox.kernel_needs(path):
            hidden.add(path)
        elif os.path.isdir(path):
            hidden.update(child for child in (os.path.join(path, name) for name in os.listdir(path))
                          if not sandbox.kernel_needs(child))
    return sorted(hidden)
