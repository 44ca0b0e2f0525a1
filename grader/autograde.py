"""`python -m grader autograde ASSIGNMENT`: grade a whole class in parallel, each submission isolated.

nbgrader does the grading; this module only orchestrates it:

- The coordinator (this process) owns the course's gradebook; nobody else writes it.
- Each submission becomes one Dask task with a self-contained *scratch course*: the course's
  nbgrader_config.py, the assignment's source/ folder, the one student's submitted/ folder and a
  small gradebook that knows only this assignment (made once by nbgrader's generate_assignment).
  The task runs `nbgrader autograde ASSIGNMENT --student STUDENT` there, sandboxed (grader/sandbox.py:
  own process, no network, read-only file system but for its scratch course, memory and wall-time
  limits), and sends back the autograded notebook and the scores nbgrader wrote into the scratch
  gradebook. Files travel inside the task, so workers need no shared file system (Slurm or
  Kubernetes clusters work the same; the workers need this package and nbgrader installed).
- As each task finishes, the coordinator copies the notebook into autograded/ and the scores into
  the course's gradebook (nbgrader's Gradebook API), one submission at a time: no concurrent
  writers, and whatever was graded is kept if the run is interrupted.
- After nbgrader, a second sandboxed child that never ran student code re-measures every accuracy check
  from the models the notebook handed in (grader/clean.py, grader/checks.py): a failed clean check
  scores its cell 0, whatever the kernel said, and disagreements flag the submission. Submitted
  notebooks are also read for lines that replace library functions (grader/integrity.py).
- A submission that crashed, ran out of time or memory scores 0 for what it lost, with the reason
  recorded in the gradebook (as the cells' automatic comment) and in autograded/<s>/<a>/.grader.json.
- .grader.json also keeps a hash of the submitted files and the assignment's source: a re-run skips
  graded, unchanged submissions (unless --force).
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import nbformat

from grader import DEFAULT_MEMORY, DEFAULT_TIMEOUT, clean, integrity, sandbox  # noqa: F401 (the defaults: callers use autograde.DEFAULT_*)
from grader.build import tool_env


RECORD = ".grader.json"


# --- the course -------------------------------------------------------------------------------

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
        raise SystemExit(f"no course folder {root}: pass --course PATH (the folder with nbgrader_config.py)")
    config = Config()
    if os.path.exists(os.path.join(root, "nbgrader_config.py")):
        config = PyFileConfigLoader("nbgrader_config.py", path=root).load_config()
    config.CourseDirectory.root = root
    if db:
        config.CourseDirectory.db_url = db
    return CourseDirectory(config=config), config


def submitted_students(cd, assignment):
    """Students with a submitted/<student>/<assignment>/ folder, sorted."""
    root = Path(cd.root)
    pattern = Path(cd.format_path(cd.submitted_directory, "*", assignment, escape=False)).relative_to(root)
    depth = len(Path(cd.submitted_directory).parts)  # submitted/<student>/...: the student's part of the path
    return sorted(p.relative_to(root).parts[depth] for p in root.glob(str(pattern)) if p.is_dir())


def files_under(folder):
    """{relative path: bytes} of the files under `folder` (hidden files and checkpoints skipped)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


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

    def generate(db_url, release):
        course = type(cd)(config=config)
        course.db_url, course.release_directory = db_url, release
        result = NbGraderAPI(coursedir=course, config=config).generate_assignment(assignment, force=True, create=True)
        if not result["success"]:
            raise SystemExit(f"nbgrader generate_assignment {assignment} failed:\n{result.get('log', '')}{result.get('error', '')}")

    with tempfile.TemporaryDirectory() as scratch:
        with Gradebook(cd.db_url, cd.course_id) as gb:
            try:
                known, duedate = bool(gb.find_assignment(assignment).notebooks), gb.find_assignment(assignment).duedate
            except MissingEntry:
                known, duedate = False, None
        if not known:
            generate(cd.db_url, os.path.join(scratch, "real-release"))
        path = os.path.join(scratch, "template.db")
        generate(f"sqlite:///{path}", os.path.join(scratch, "release"))
        with Gradebook(f"sqlite:///{path}", cd.course_id) as gb:  # late penalties need the due date
            gb.update_or_create_assignment(assignment, duedate=duedate)
        return Path(path).read_bytes()


# --- one submission (runs on a Dask worker) ---------------------------------------------------

SCRATCH_ROOT = Path(tempfile.gettempdir(), "mnistlab-grader")  # every scratch course lives here (the jail hides the others)


def grade_submission(job):
    """Grade one submission in a scratch course; return what the coordinator records."""
    start = time.perf_counter()
    SCRATCH_ROOT.mkdir(exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f"{job['student']}-", dir=SCRATCH_ROOT)
    try:
        files, problems, notes = check_notebooks(job)
        if problems:  # nothing nbgrader could grade: say why, in words the student understands
            return failed(job, "; ".join(problems), start)
        for name, data in files.items():
            path = Path(scratch, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        Path(scratch, "grader").mkdir()
        Path(scratch, "grader", "gradebook.db").write_bytes(job["template"])
        db_url = f"sqlite:///{scratch}/grader/gradebook.db"
        argv = ["autograde", job["assignment"], "--student", job["student"], f"--db={db_url}",
                f"--CourseDirectory.root={scratch}", "--Autograde.create_student=True"]
        if job.get("cell_timeout"):
            argv.append(f"--Execute.timeout={int(job['cell_timeout'])}")
        # nbgrader fails the whole notebook when the kernel's last output messages take over 4 s to arrive
        # (a busy machine): wait longer for them, and never count the wait as the student's failure.
        argv += ["--Execute.iopub_timeout=60", "--Execute.raise_on_iopub_timeout=False"]
        run = {"scratch": scratch, "argv": argv, "db_url": db_url, "course_id": job["course_id"], "kind": "autograde",
               "assignment": job["assignment"], "student": job["student"], "isolate_network": job["isolate_network"],
               "hide": job.get("hide", []), "data_dir": job.get("data_dir"), "tmp": str(SCRATCH_ROOT.parent)}
        with sandbox.zygote() as helper:
            exitcode, killed, peak = helper.run(run, job["timeout"], job["memory"])
        log = read_text(Path(scratch, "grader", "nbgrader.log"))
        scores = read_json(Path(scratch, "grader", "scores.json")) if not killed else None
        autograded = Path(scratch, job["autograded"])
        graded_files = trim_outputs(files_under(autograded)) if autograded.is_dir() and not killed else {}
        reason = killed or failure_reason(exitcode, log, scores, graded_files)
        errors = cell_errors(graded_files)
        checks, flags = [], []
        if not reason:
            checks = clean_checks(job, scratch)
            scores, notes = apply_checks(scores, checks, notes)
            flags = [c["flag"] for c in checks if c.get("flag")] + unconfirmed(checks, graded_files, errors)
        flags += [f for name, data in files.items() if name.endswith(".ipynb") for f in integrity.scan(data.decode(errors="replace"))]
        sandbox_done = read_json(Path(scratch, "grader", "sandbox.json")) or {}
        sandbox_done.update(jail_status(log))
        return {"student": job["student"], "assignment": job["assignment"], "hash": job["hash"],
                "status": "failed" if reason else "graded", "reason": reason, "scores": scores if not reason else None,
                "files": graded_files if not reason else {}, "cell_errors": errors,
                "checks": checks, "flags": flags, "cell_notes": notes, "log_tail": log[-4000:],
                "sandbox": sandbox_done, "peak_mib": round(peak / 2**20), "seconds": round(time.perf_counter() - start, 2)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


MAX_TEXT, MAX_DATA = 20_000, 1_000_000  # characters of one text output; bytes of one image or other data


def trim_outputs(files):
    """Cut huge outputs in the graded notebooks (nbgrader limits lines, not characters): a notebook that
    prints 100 MB keeps the first and last lines of it, and the gradebook, feedback and report stay small."""
    def cut(text):
        if len(text) <= MAX_TEXT:
            return text
        return f"{text[:MAX_TEXT // 2]}\n... [{len(text) - MAX_TEXT // 2 - 2000:,} characters cut by the grader] ...\n{text[-2000:]}"

    trimmed = {}
    for name, data in files.items():
        if not name.endswith(".ipynb") or len(data) < MAX_DATA:
            trimmed[name] = data
            continue
        try:
            nb = nbformat.reads(data.decode(errors="replace"), as_version=4)
        except Exception:
            trimmed[name] = data
            continue
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                if isinstance(output.get("text"), str):
                    output["text"] = cut(output["text"])
                for kind, value in list(output.get("data", {}).items()):
                    text = value if isinstance(value, str) else json.dumps(value)
                    if len(text) > MAX_DATA:
                        output["data"] = {"text/plain": f"[a {kind} output of {len(text):,} characters, cut by the grader]"}
                        break
                    if kind == "text/plain":
                        output["data"][kind] = cut(text)
                if output.get("traceback"):
                    output["traceback"] = [cut(line) for line in output["traceback"][-50:]]
        trimmed[name] = nbformat.writes(nb).encode()
    return trimmed


def failed(job, reason, start):
    """The result of a submission that could not be graded at all."""
    return {"student": job["student"], "assignment": job["assignment"], "hash": job["hash"], "status": "failed",
            "reason": reason, "scores": None, "files": {}, "cell_errors": {}, "checks": [], "flags": [],
            "cell_notes": {}, "sandbox": {}, "peak_mib": None, "seconds": round(time.perf_counter() - start, 2)}


def read_text(path):
    return path.read_text(errors="replace") if path.exists() else ""


def read_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def jail_status(log):
    """What grader/jail.py reported in nbgrader's log (one line per kernel started)."""
    lines = [line.split("GRADER-JAIL ", 1)[1] for line in log.splitlines() if line.startswith("GRADER-JAIL ")]
    return read_json_text(lines[-1]) if lines else {"kernel": "no kernel started"}


def read_json_text(text):
    try:
        return json.loads(text)
    except ValueError:
        return {}


# --- what nbgrader cannot tell a student: a notebook it cannot read, a grade cell gone -------

def check_notebooks(job):
    """Look at the submitted notebooks before grading. Returns (files to grade, problems, notes).

    problems (nothing can be graded): no notebook of the assignment's name, one that is not a notebook.
    notes {grade id: text}: grade cells deleted, retyped or duplicated (nbgrader restores or drops them).
    Duplicated cell ids are renumbered (the notebook format forbids them; JupyterLab never makes them).
    """
    files, problems, notes = dict(job["files"]), [], {}
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
        ids = [cell.get("id") for cell in nb.cells]
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


def drop_duplicate_grade_cells(nb):
    """Copies of a graded cell become plain cells (nbgrader itself would reject the notebook). True if any."""
    seen, changed = set(), False
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if grade_id and grade_id in seen:
            del cell["metadata"]["nbgrader"]
            changed = True
        seen.add(grade_id)
    return changed


def grade_cell_notes(master, submitted):
    """{grade id: what happened to it} for grade cells deleted, retyped or duplicated in `submitted`."""
    def grade_cells(nb):
        return [(c.get("metadata", {}).get("nbgrader", {}).get("grade_id"), c.cell_type) for c in nb.cells
                if c.get("metadata", {}).get("nbgrader", {}).get("grade")]

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


# --- the clean re-measurement (grader/clean.py), in a fresh sandboxed process -----------------

def clean_checks(job, scratch):
    """Score the handed-in models in a new sandboxed child that never ran student code."""
    from grader.checks import checks_of

    if not checks_of(job["assignment"]):
        return []
    cells = sorted(grade_ids({n: d for n, d in job["files"].items() if n.startswith("source/")}) - {None})
    if not any(check.cell in cells for check in checks_of(job["assignment"]).values()):
        return []
    run = {"scratch": scratch, "kind": "score", "log": "clean.log", "assignment": job["assignment"], "cells": cells,
           "baselines": job.get("baselines"), "data_dir": job.get("data_dir"), "isolate_network": True}
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


def failure_reason(exitcode, log, scores, files):
    """Why nbgrader did not grade the submission, from its log; None when it did."""
    if exitcode == 0 and scores and files:
        return None
    if "DeadKernelError" in log or "Kernel died" in log or "kernel died" in log:
        return "the kernel died (a crash: os._exit, a segfault or the kernel was killed)"
    errors = [line.strip() for line in log.splitlines() if "[ERROR]" in line or "Error" in line]
    return f"nbgrader failed (exit code {exitcode}): {errors[-1][:300] if errors else log.strip()[-300:]}"


def cell_errors(files):
    """{grade cell id: error name} for graded cells that raised (e.g. CellTimeoutError)."""
    errors = {}
    for name, data in files.items():
        if name.endswith(".ipynb"):
            for cell in nbformat.reads(data.decode(), as_version=4).cells:
                meta = cell.get("metadata", {}).get("nbgrader", {})
                grade_id = meta.get("grade_id") if meta.get("grade") or meta.get("solution") else None
                for output in cell.get("outputs", []):
                    if grade_id and output.get("output_type") == "error":
                        errors[grade_id] = output.get("ename", "error")
    return errors


# --- the coordinator --------------------------------------------------------------------------

def parse_size(text):
    """'4G', '512M', '1.5GiB' or bytes -> bytes."""
    text = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    try:
        return int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(text)
    except ValueError:
        raise SystemExit(f"cannot read the memory size {text!r}: write e.g. 4G or 512M") from None


def read_record(cd, assignment, student):
    path = Path(cd.format_path(cd.autograded_directory, student, assignment), RECORD)
    return json.loads(path.read_text()) if path.exists() else None


def record(cd, result):
    """Write one result into autograded/ and the gradebook (the coordinator is the only writer)."""
    from nbgrader.api import Gradebook

    assignment, student = result["assignment"], result["student"]
    folder = Path(cd.format_path(cd.autograded_directory, student, assignment))
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if result["status"] == "graded":
        for name, data in result["files"].items():
            Path(folder, name).parent.mkdir(parents=True, exist_ok=True)
            Path(folder, name).write_bytes(data)
    else:  # keep the student's files next to the reason, for whoever looks at it by hand
        submitted = Path(cd.format_path(cd.submitted_directory, student, assignment))
        for name, data in files_under(submitted).items():
            Path(folder, name).parent.mkdir(parents=True, exist_ok=True)
            Path(folder, name).write_bytes(data)

    with warnings.catch_warnings(), Gradebook(cd.db_url, cd.course_id) as gb:
        warnings.simplefilter("ignore")  # SQLAlchemy's SAWarnings about nbgrader's own session use
        gb.update_or_create_student(student)
        timestamp = (result["scores"] or {}).get("timestamp")
        submission = gb.update_or_create_submission(assignment, student, **({"timestamp": timestamp} if timestamp else {}))
        if result["status"] == "graded":
            for nb in result["scores"]["notebooks"]:
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
                    comment.auto_comment = f"Not graded: {result['reason']}"
        gb.db.commit()
        score, max_score = submission.score, submission.max_score
        pending = sum(g.max_score for nb in submission.notebooks for g in nb.grades if g.needs_manual_grade)

    summary = {key: result.get(key) for key in ("status", "reason", "hash", "cell_errors", "sandbox", "peak_mib", "seconds",
                                                 "checks", "flags", "cell_notes")}
    summary.update(score=score, max_score=max_score, manual_pending=pending, graded_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    Path(folder, RECORD).write_text(json.dumps(summary, indent=1))
    return summary


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


def start_client(scheduler=None, workers=None):
    """A Dask client: the cluster at `scheduler`, or a local one with one single-threaded process per core."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="30s"), None
    cluster = LocalCluster(n_workers=workers or os.cpu_count(), threads_per_worker=1, processes=True,
                           dashboard_address=None, memory_limit=0, silence_logs=40)
    return Client(cluster), cluster


def warm_up():
    """Start this worker's zygote (it imports nbgrader, seconds) before the first submission arrives."""
    with sandbox.zygote():
        return os.getpid()


def plan(cd, assignment, students=None, force=False, **settings):
    """The jobs to grade for `assignment`, and the records of those skipped (graded, unchanged)."""
    source = Path(cd.format_path(cd.source_directory, ".", assignment))
    if not source.is_dir():
        raise SystemExit(f"no assignment {assignment!r}: {source} does not exist")
    everyone = submitted_students(cd, assignment)
    wanted = [s for s in everyone if s in students] if students else everyone
    source_files = files_under(source)
    config_file = Path(cd.root, "nbgrader_config.py")
    root = Path(cd.root)
    jobs, skipped = [], {}
    for student in wanted:
        submitted = Path(cd.format_path(cd.submitted_directory, student, assignment))
        files = files_under(submitted)
        digest = fingerprint(files, source_files)
        previous = read_record(cd, assignment, student)
        if not force and previous and previous.get("hash") == digest:
            skipped[assignment, student] = previous
            continue
        payload = {str(submitted.relative_to(root) / name): data for name, data in files.items()}
        payload.update({str(source.relative_to(root) / name): data for name, data in source_files.items()})
        if config_file.exists():
            payload["nbgrader_config.py"] = config_file.read_bytes()
        jobs.append(dict(settings, assignment=assignment, student=student, hash=digest, files=payload,
                         course_id=cd.course_id,
                         autograded=str(Path(cd.format_path(cd.autograded_directory, student, assignment)).relative_to(root))))
    return jobs, skipped


def outcome(future, job):
    """The result of a grading task, or a failure saying why the task itself failed (e.g. its worker died)."""
    try:
        return future.result()
    except Exception as error:
        result = failed(job, f"grading infrastructure: {type(error).__name__}: {error}"[:500], time.perf_counter())
        result["seconds"] = None
        return result


TIME_LIMITS = ("time limit:", "wall-time limit:")  # how Zygote.run's reasons for a time kill begin


def time_limited(result):
    """True if the submission lost points to a time limit: killed for time, or a cell interrupted by one."""
    return ((result["status"] == "failed" and (result["reason"] or "").startswith(TIME_LIMITS))
            or "CellTimeoutError" in result.get("cell_errors", {}).values())


def regraded(result):
    """Note on a second grading (alone on the machine) what happened, so that nobody reads a 0 as a busy machine."""
    result = dict(result, cell_notes=dict(result.get("cell_notes") or {}))
    if time_limited(result):
        note = "ran past a time limit twice: in the class run, and again graded alone on the machine"
        if result["status"] == "failed":
            result["reason"] = f"{result['reason']} ({note})"
        for cell, error in result.get("cell_errors", {}).items():
            if error == "CellTimeoutError":
                result["cell_notes"][cell] = f"this cell {note}: it scores 0"
    else:
        result["cell_notes"]["time-limit"] = ("a time limit stopped this submission in the class run (a busy machine); "
                                              "it was graded again alone, and that grade counts")
    return result


def done(cd, job, result, results, failures):
    """Record one result and remember it (and its failure, to print at the end)."""
    summary = record(cd, result)
    results[job["assignment"], job["student"]] = summary
    if summary["status"] == "failed":
        failures.append(f"FAILED {job['assignment']}/{job['student']}: {summary['reason']}")


def autograde(assignment, course=".", students=None, **options):
    """Grade every submission of `assignment`; returns {student: summary}. See the module docstring."""
    results = autograde_many([assignment], course, students=students, **options)
    if students and set(students) - {s for _, s in results}:
        missing = ", ".join(sorted(set(students) - {s for _, s in results}))
        raise SystemExit(f"no submission of {assignment} from {missing}: run `collect` first")
    return {student: summary for (_, student), summary in results.items()}


def autograde_many(assignments, course=".", db=None, scheduler=None, workers=None, force=False, students=None,
                   timeout=DEFAULT_TIMEOUT, memory=DEFAULT_MEMORY, cell_timeout=None, allow_network=False,
                   progress=True, client=None):
    """Grade every submission of each assignment, all in one pool; returns {(assignment, student): summary}."""
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    cd, config = course_directory(course, db)
    settings = dict(timeout=timeout, memory=parse_size(memory), cell_timeout=cell_timeout, isolate_network=not allow_network,
                    hide=hidden_paths(cd), data_dir=str(data_dir()))
    jobs, results = [], {}
    for assignment in assignments:
        more, skipped = plan(cd, assignment, students, force, **settings)
        jobs += more
        results.update(skipped)
    if results:
        print(f"{len(results)} submission(s) already graded and unchanged: skipped (--force to grade them again)")
    if not jobs:
        return results

    templates = {a: template_gradebook(cd, config, a) for a in sorted({job["assignment"] for job in jobs})}
    baselines = {}
    for assignment in templates:  # the data every sandbox reads (cached now), and the runs all students share
        clean.warm_data(assignment)
        baselines[assignment] = clean.baselines(assignment)
    own_client, cluster = (client, None) if client else start_client(scheduler, workers)
    failures = []
    try:
        own_client.run(warm_up)
        futures = [own_client.submit(grade_submission, dict(job, template=templates[job["assignment"]],
                                                            baselines=baselines[job["assignment"]]), pure=False,
                                     key=f"grade-{job['assignment']}-{job['student']}-{job['hash'][:12]}") for job in jobs]
        by_key = {f.key: job for f, job in zip(futures, jobs)}
        bar = tqdm(total=len(futures), desc=f"autograde {assignments[0] if len(assignments) == 1 else f'{len(assignments)} assignments'}", unit="submission",
                   disable=not progress, file=sys.stdout)
        again = []  # submissions that hit a time limit: graded once more, alone, before a 0 is recorded
        for future in as_completed(futures):
            job = by_key[future.key]
            result = outcome(future, job)
            future.release()
            if time_limited(result):
                again.append(job)
                continue
            done(cd, job, result, results, failures)  # as soon as it is done: an interrupted run keeps it
            bar.update()
            bar.set_postfix(failed=len(failures))
        for job in again:  # one at a time: nothing else of this run shares the machine with it
            future = own_client.submit(grade_submission, dict(job, template=templates[job["assignment"]],
                                                              baselines=baselines[job["assignment"]]), pure=False)
            done(cd, job, regraded(outcome(future, job)), results, failures)
            bar.update()
            bar.set_postfix(failed=len(failures))
        bar.close()
    finally:
        if not client:
            own_client.close()
            if cluster:
                cluster.close()
    for line in failures:
        print(line)
    for (assignment, student), summary in sorted(results.items()):
        for cell, error in summary.get("cell_errors", {}).items():
            if error == "CellTimeoutError":
                print(f"TIMEOUT {assignment}/{student}: cell {cell} ran past the cell time limit twice (the second "
                      "time graded alone) and scored 0")
    return results
