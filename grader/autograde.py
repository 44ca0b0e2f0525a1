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

from grader import sandbox
from grader.build import tool_env

RECORD = ".grader.json"
DEFAULT_MEMORY = "4G"
DEFAULT_TIMEOUT = 1800


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

def grade_submission(job):
    """Grade one submission in a scratch course; return what the coordinator records."""
    start = time.perf_counter()
    scratch = tempfile.mkdtemp(prefix=f"grader-{job['student']}-")
    try:
        for name, data in job["files"].items():
            path = Path(scratch, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        Path(scratch, "gradebook.db").write_bytes(job["template"])
        db_url = f"sqlite:///{scratch}/gradebook.db"
        argv = ["autograde", job["assignment"], "--student", job["student"], f"--db={db_url}",
                f"--CourseDirectory.root={scratch}", "--Autograde.create_student=True"]
        if job.get("cell_timeout"):
            argv.append(f"--Execute.timeout={int(job['cell_timeout'])}")
        run = {"scratch": scratch, "argv": argv, "db_url": db_url, "course_id": job["course_id"],
               "assignment": job["assignment"], "student": job["student"], "isolate_network": job["isolate_network"]}
        with sandbox.zygote() as helper:
            exitcode, killed, peak = helper.run(run, job["timeout"], job["memory"])
        log = Path(scratch, "nbgrader.log").read_text(errors="replace") if Path(scratch, "nbgrader.log").exists() else ""
        scores_file, sandbox_file = Path(scratch, "scores.json"), Path(scratch, "sandbox.json")
        scores = json.loads(scores_file.read_text()) if scores_file.exists() and not killed else None
        autograded = Path(scratch, job["autograded"])
        files = files_under(autograded) if autograded.is_dir() and not killed else {}
        reason = killed or failure_reason(exitcode, log, scores, files)
        return {"student": job["student"], "assignment": job["assignment"], "hash": job["hash"],
                "status": "failed" if reason else "graded", "reason": reason, "scores": scores if not reason else None,
                "files": files if not reason else {}, "cell_errors": cell_errors(files), "log_tail": log[-4000:],
                "sandbox": json.loads(sandbox_file.read_text()) if sandbox_file.exists() else {},
                "peak_mib": round(peak / 2**20), "seconds": round(time.perf_counter() - start, 2)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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
                    grade.auto_score, grade.needs_manual_grade = g["auto_score"], g["needs_manual_grade"]
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

    summary = {key: result[key] for key in ("status", "reason", "hash", "cell_errors", "sandbox", "peak_mib", "seconds")}
    summary.update(score=score, max_score=max_score, manual_pending=pending, graded_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    Path(folder, RECORD).write_text(json.dumps(summary, indent=1))
    return summary


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
    settings = dict(timeout=timeout, memory=parse_size(memory), cell_timeout=cell_timeout, isolate_network=not allow_network)
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
    own_client, cluster = (client, None) if client else start_client(scheduler, workers)
    failures = []
    try:
        own_client.run(warm_up)
        futures = [own_client.submit(grade_submission, dict(job, template=templates[job["assignment"]]), pure=False,
                                     key=f"grade-{job['assignment']}-{job['student']}-{job['hash'][:12]}") for job in jobs]
        by_key = {f.key: job for f, job in zip(futures, jobs)}
        bar = tqdm(total=len(futures), desc=f"autograde {assignments[0] if len(assignments) == 1 else f'{len(assignments)} assignments'}", unit="submission",
                   disable=not progress, file=sys.stdout)
        for future in as_completed(futures):
            job = by_key[future.key]
            try:
                result = future.result()
            except Exception as error:  # the task itself failed, e.g. its worker died again and again
                result = {"student": job["student"], "assignment": job["assignment"], "hash": job["hash"],
                          "status": "failed", "reason": f"grading infrastructure: {type(error).__name__}: {error}"[:500],
                          "scores": None, "files": {}, "cell_errors": {}, "sandbox": {}, "peak_mib": None, "seconds": None}
            summary = record(cd, result)  # as soon as it is done: an interrupted run keeps it
            results[job["assignment"], job["student"]] = summary
            if summary["status"] == "failed":
                failures.append(f"FAILED {job['assignment']}/{job['student']}: {summary['reason']}")
            bar.update()
            bar.set_postfix(failed=len(failures))
            future.release()
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
                print(f"TIMEOUT {assignment}/{student}: cell {cell} ran past the cell time limit and scored 0")
    return results
