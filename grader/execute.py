"""Grading one submission on a Dask worker: its stages, in order, over one scratch course.

  check_files        grader/preflight.py: refuse what nbgrader cannot grade, repair what it would
  execute_isolated   `nbgrader autograde` in a sandboxed child (grader/sandbox.py, grader/jail.py); the
                     notebook's test cells hand their values in (mnistlab.course.hand_in)
  rescore_clean      grader/rescore.py: a clean child measures the handed-in models again and decides every
                     test cell from its values (grader/clean.py, grader/decide); its verdict sets the score
  verify             grader/integrity.py: lines that replace library functions or hook the kernel, flagged

STAGES lists them; each takes the Grading (what is known so far) and adds to it. The result is a
SubmissionResult (grader/results.py), which the coordinator records (grader/course.py: record).
"""

import json
import os
import shutil
import socket
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grader import integrity, nbcell, preflight, rescore, sandbox
from grader.course import MAX_GRADED_NOTEBOOK, files_under
from grader.results import CheckResult, SubmissionResult

SCRATCH_ROOT = Path(tempfile.gettempdir(), "mnistlab-grader")  # every scratch course lives here (the jail hides the others)
SHUTDOWN_WAIT = 1.0  # seconds a kernel gets to exit once nbgrader is done with it (jupyter_client's default: 5)


@dataclass
class Grading:
    """What grading one submission has found so far: each stage reads it and adds to it."""
    job: dict
    scratch: str
    files: dict = field(default_factory=dict)  # the submitted files, as preflight passed them (name -> bytes)
    notes: dict = field(default_factory=dict)  # {grade id: the grader's note for that cell}
    reason: str = None  # why the submission could not be graded (the later stages then do nothing)
    ran: dict = None  # what execute_isolated left (scores, autograded files, cell errors, log, sandbox report)
    scores: dict = None  # nbgrader's scores, then the clean verdict's
    checks: list = field(default_factory=list)  # the clean checks (grader/results.py CheckResult, as JSON)
    flags: list = field(default_factory=list)  # lines for a human


def check_files(g):
    """Stage 1, grader/preflight.py: refuse what nbgrader cannot grade (the reason in words the student
    understands), repair what it would (e.g. duplicated cell ids), with a note."""
    g.files, problems, g.notes = preflight.check_notebooks(g.job)
    if problems:
        g.reason = "; ".join(problems)


def execute_isolated(g):
    """Stage 2: `nbgrader autograde` of the one student in the scratch course, in a sandboxed child (see run_nbgrader)."""
    if g.reason is None:
        g.ran = run_nbgrader(g.job, g.files, g.scratch)
        g.reason, g.scores = g.ran["reason"], g.ran["scores"]


def rescore_clean(g):
    """Stage 3, grader/rescore.py: the handed-in models measured again and every test cell decided by a clean child
    that never ran student code; its verdict sets the cells' scores; disagreements with the kernel are flagged.
    (Not for a course without this course's hand-ins: job["clean"] is False.)"""
    if g.reason is None and g.job.get("clean", True):
        g.checks = rescore.clean_checks(g.job, g.scratch)
        g.scores, g.notes = rescore.apply_checks(g.scores, g.checks, g.notes)
        g.flags += [c["flag"] for c in g.checks if c.get("flag")] + rescore.unconfirmed(g.checks, g.ran["files"],
                                                                                         g.ran["errors"])


def verify(g):
    """Stage 4, grader/integrity.py: lines of the submitted notebooks that replace library functions or reach into
    the kernel's machinery, flagged for a human (they change no score)."""
    if g.ran is not None:
        g.flags += [flag for name, data in g.files.items() if name.endswith(".ipynb")
                    for flag in integrity.scan(data.decode(errors="replace"))]


STAGES = (check_files, execute_isolated, rescore_clean, verify)


def grade_submission(job):
    """Grade one submission in a scratch course, stage by stage (STAGES); return what the coordinator records."""
    start = time.perf_counter()
    announce_start()
    scratch = new_scratch(job["student"])
    try:
        g = Grading(job, scratch)
        for stage in STAGES:
            stage(g)
        if g.ran is None:  # refused before nbgrader ran: nothing nbgrader could grade
            return failed(job, g.reason, start)
        ran, graded = g.ran, g.reason is None
        return SubmissionResult(student=job["student"], assignment=job["assignment"], hash=job["hash"],
                                status="graded" if graded else "failed", reason=g.reason,
                                scores=g.scores if graded else None, files=ran["files"] if graded else {},
                                cell_errors=ran["errors"], checks=[CheckResult.from_json(c) for c in g.checks],
                                flags=g.flags, cell_notes=g.notes, log_tail=ran["log"][-4000:], sandbox=ran["sandbox"],
                                peak_mib=round(ran["peak"] / 2**20), seconds=round(time.perf_counter() - start, 2))
    finally:
        remove(scratch)


STARTED = "grader-started"  # the event topic of announce_start


def announce_start():
    """Tell the coordinator (through the scheduler's events) that this worker started the task it runs: if the
    worker is lost, the coordinator knows which submissions were under way there (and were graded again
    elsewhere) and which it only held. Outside a Dask worker, nothing."""
    try:
        from distributed import get_worker

        worker = get_worker()
        worker.log_event(STARTED, {"key": str(worker.get_current_task()), "worker": worker.address})
    except Exception:  # (not in a worker, or an older Dask: the report then counts what the lost worker held)
        pass


# --- scratch folders ----------------------------------------------------------------------------
# A scratch course is named <student>-<random>.<pid>@<host>: the grading process that owns it (the Dask
# worker) and its machine. A worker killed mid-grading cannot remove its own (nor can anything it started:
# they die with it); the next sweep on that machine does, once the owner is gone.

def new_scratch(student):
    """A new scratch course folder in SCRATCH_ROOT, named after its owner (this process) and machine."""
    SCRATCH_ROOT.mkdir(exist_ok=True)
    return tempfile.mkdtemp(prefix=f"{student}-", suffix=f".{os.getpid()}@{socket.gethostname()}", dir=SCRATCH_ROOT)


def owner_of(name):
    """(pid, host) of the process that made scratch folder `name`, or None for a name not made by new_scratch."""
    head, _, host = name.rpartition("@")
    pid = head.rpartition(".")[2]
    return (int(pid), host) if host and pid.isdigit() else None


def owner_gone(path, pid):
    """True if process `pid` cannot own the folder `path`: it is gone (or a zombie), or was started after the folder
    last changed (its pid used again). A folder whose owner runs is never stale, however old."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:  # dead, not yet reaped by its parent
            return True
        started = process.create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # (e.g. not allowed to look): treat it as running
        return False
    try:
        return started > os.lstat(path).st_mtime + 1
    except OSError:
        return False


def sweep_stale_scratch(root=None):
    """Remove the scratch folders on this machine whose owner process is gone (a killed worker's); returns their
    names. Folders of running graders, of other machines (a shared temporary folder) and of unknown form stay."""
    root, swept, host = Path(root or SCRATCH_ROOT), [], socket.gethostname()
    try:
        entries = list(os.scandir(root))
    except OSError:
        return swept
    for entry in entries:
        owner = owner_of(entry.name)
        if owner and owner[1] == host and entry.is_dir(follow_symlinks=False) and owner_gone(entry.path, owner[0]):
            remove(entry.path)
            swept.append(entry.name)
    return swept


def remove(folder):
    """Remove a folder however its contents were left (a notebook may make folders read-only)."""
    def writable_and_again(function, path, _):
        try:
            os.chmod(os.path.dirname(path), stat.S_IRWXU)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, stat.S_IRWXU)
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            pass

    shutil.rmtree(folder, onerror=writable_and_again)


def run_nbgrader(job, files, scratch):
    """`nbgrader autograde` of the one student in the scratch course, in a sandboxed child. Returns what it
    left: scores, autograded files (outputs trimmed), cell errors, why it failed (None if it did not), the
    sandbox's report, nbgrader's log and the peak memory."""
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
    # Every cell has run when nbgrader shuts a kernel down. One that hangs after its shutdown request (ipykernel, about
    # 1 kernel in 30 here, with plain nbgrader too) is ended after SHUTDOWN_WAIT / 2 seconds instead of 2.5 + 1: the
    # jail still hands its folders back (grader/jail.py: wait_for). A kernel exits within 0.1-0.3 s of the request.
    argv.append(f"--KernelManager.shutdown_wait_time={SHUTDOWN_WAIT}")
    run = {"scratch": scratch, "argv": argv, "db_url": db_url, "course_id": job["course_id"], "kind": "autograde",
           "assignment": job["assignment"], "student": job["student"], "isolate_network": job["isolate_network"],
           "hide": job.get("hide", []), "data_dir": job.get("data_dir"), "tmp": str(SCRATCH_ROOT.parent)}
    with sandbox.zygote() as helper:
        exitcode, killed, peak = helper.run(run, job["timeout"], job["memory"])
    log = read_text(Path(scratch, "grader", "nbgrader.log"))
    scores = read_json(Path(scratch, "grader", "scores.json")) if not killed else None
    autograded = Path(scratch, job["autograded"])
    graded = files_under(autograded, notebooks_up_to=MAX_GRADED_NOTEBOOK) if autograded.is_dir() and not killed else {}
    graded_files = trim_outputs(graded)  # (links, special and oversize files the kernel made there are left out)
    report = read_json(Path(scratch, "grader", "sandbox.json")) or {}
    report.update(jail_status(log))
    return {"scores": scores, "files": graded_files, "errors": cell_errors(graded_files),
            "reason": killed or failure_reason(exitcode, log, scores, graded_files), "sandbox": report, "log": log,
            "peak": peak}


def warm_up(clean=False, zygotes=1):
    """Start this worker's zygote (it imports nbgrader, a second) before the first submission arrives, and sweep the
    scratch folders killed workers left on this machine. clean: also the zygote of the clean scoring children
    (it imports PyTorch), for a course whose clean checks apply. zygotes: how many of each this process keeps, one
    per worker that grades in it (the workers of a local run are threads of one process)."""
    sweep_stale_scratch()
    sandbox.keep_warm(zygotes)
    if clean:
        sandbox.keep_warm(zygotes, rescore.CLEAN_PRELOAD)
    return os.getpid()


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
    return SubmissionResult(student=job["student"], assignment=job["assignment"], hash=job["hash"], status="failed",
                            reason=reason, seconds=round(time.perf_counter() - start, 2))


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
                grade_id = nbcell.grade_id(cell) if nbcell.is_grade(cell) or nbcell.is_solution(cell) else None
                for output in cell.get("outputs", []):
                    if grade_id and output.get("output_type") == "error":
                        errors[grade_id] = output.get("ename", "error")
    return errors
