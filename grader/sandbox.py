"""Run one `nbgrader autograde` in a sandbox: its own process, no network, a read-only file system, limits.

Starting Python and importing nbgrader takes seconds, more than many notebooks need to run. So each
Dask worker (a thread of the coordinator on one machine) keeps a small *zygote*: a helper process that imported nbgrader once
(`python -m grader.sandbox`, with what nbgrader would import or build in every child: warm_imports) and
then forks one fresh child per job. The clean scoring children come from a second zygote that also imported
PyTorch (`python -m grader.sandbox MODULE...`: preload); the autograde children never carry PyTorch's
pages, which would count against the notebook's memory. For an autograde job the child

  1. starts a new session, so that it and everything it starts can be found and killed together;
  2. moves into a new, empty network namespace (only a loopback, which the Jupyter kernel needs to
     talk to nbgrader): the student's code cannot reach the network;
  3. moves into a new mount namespace where every file system is read-only except its scratch
     course: it cannot write the gradebook, the course source or another student's files;
  4. points Jupyter's kernel spec "python3" at grader/jail.py, which starts the student's kernel in
     its own PID namespace, on a root file system that holds only what it runs on and its own
     folders of the scratch course, as an unprivileged uid of its own with a limit on processes and
     threads, and with no capabilities left (so it cannot undo any of this);
  5. runs `nbgrader autograde ASSIGNMENT --student STUDENT` in the scratch course, in-process.

A score job calls the function its "entry" names ("module:function", e.g. grader.clean's
score_submission, which re-measures the handed-in models) on the hand-in folder, and saves what it
returns as JSON; this module imports no scorer. It gets steps 1-3 and gives up all its capabilities
too; it never runs student code, only loads the models as data.

The worker watches the child from outside (`Zygote.run`): the memory (PSS) of its whole process
tree (nbgrader and the student's kernel) and the CPU time it used, with the wall time only as a
backstop (WALL_BACKSTOP times the CPU limit, for a kernel that sleeps). CPU time, because a busy
machine must not cost a student points: a submission's own CPU seconds do not grow when its
neighbours load the machine, its wall time does. Over a limit, the tree is killed and the reason
returned. Per-cell time limits are nbgrader's own (`Execute.timeout`, wall time): a cell that runs
too long is interrupted and scores 0, the rest of the notebook still runs; the coordinator re-grades
such a submission once, alone, before it records the 0 (grader/autograde.py).
"""

import contextlib
import importlib
import json
import os
import select
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import psutil

from grader.linux import (PARENT_PID, die_with_parent, drop_capabilities, loopback_up, new_namespaces,
                          read_only_except)


# --- inside the child -------------------------------------------------------------------------

def isolate(scratch, network=True, keep_capabilities=False):
    """Sandbox this process (see the module docstring). Returns what was done, in words.

    keep_capabilities: for nbgrader's own process, which never runs student code: grader/jail.py needs
    them to jail the kernel, which then drops them. (A process without capabilities cannot trace or read
    the memory of one that has them, so the student's kernel cannot reach into nbgrader.)"""
    try:
        new_namespaces(network)
    except OSError as error:
        return {"network": f"not isolated ({error})", "filesystem": f"not protected ({error})"}
    done = {}
    try:
        read_only_except(scratch)
        done["filesystem"] = "read-only except the scratch course"
    except OSError as error:
        done["filesystem"] = f"not protected ({error})"
    if network:
        loopback_up()
    done["network"] = "isolated (own network namespace, loopback only)" if network else "not isolated (--allow-network)"
    if not keep_capabilities:
        drop_capabilities()
    return done


KEEP_FOR_KERNEL = ("autograded", "home", "hand-in")  # all the jailed kernel sees of its scratch course


def kernel_paths():
    """What the student's kernel runs on: the Python installation (this venv and the Python it was made
    from) and the mnistlab package's folder (not the checkout around it)."""
    import importlib.util

    spec = importlib.util.find_spec("mnistlab")
    return [sys.prefix, sys.base_prefix] + ([os.path.dirname(spec.origin)] if spec and spec.origin else [])


def kernel_needs(path):
    """True if `path` is, or holds, what the student's kernel runs on (Python, mnistlab): never cover it whole."""
    path = os.path.realpath(path).rstrip(os.sep)
    return any(n == path or n.startswith(path + os.sep) for n in map(os.path.realpath, kernel_paths()))


def kernel_spec(job):
    """A kernel spec "python3" that starts the kernel through grader/jail.py (nbgrader asks for "python3").

    JUPYTER_PATH puts it ahead of the installed one. Returns the folder to put on JUPYTER_PATH. It lives
    in scratch/grader, which the kernel never sees: a kernel that could rewrite the spec would choose what
    nbgrader starts next, with its capabilities. `python -P`: nothing is imported from the working folder
    (the notebook's folder, which the kernel can write), only grader.jail itself.
    """
    scratch = job["scratch"]
    config = Path(scratch, "grader", "jail.json")
    config.write_text(json.dumps({"scratch": scratch, "keep": list(KEEP_FOR_KERNEL), "hide": job.get("hide", []),
                                  "read_only": kernel_paths() + ([job["data_dir"]] if job.get("data_dir") else [])}))
    folder = Path(scratch, "grader", "jupyter")
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-P", "-m", "grader.jail", str(config), "-f", "{connection_file}"],
        "display_name": "Python 3 (grader jail)", "language": "python", "metadata": {"debugger": False}}))
    return folder


def prepare(job):
    """In the forked child: own session, output to the log, sandbox, and a scratch HOME. Returns what was done."""
    os.setsid()
    scratch = job["scratch"]
    log = os.open(os.path.join(scratch, "grader", job.get("log", "nbgrader.log")), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    done = isolate(scratch, network=job.get("isolate_network", True), keep_capabilities=job.get("kind") != "score")
    # The clean scorer's HOME is one the student's kernel never saw (scratch/grader): the kernel's own home/
    # holds what it left there (caches, folders it made unreadable), which must not change a clean verdict.
    home = os.path.join(scratch, "grader", "clean-home") if job.get("kind") == "score" else os.path.join(scratch, "home")
    os.makedirs(home, exist_ok=True)
    # Everything Jupyter, IPython and matplotlib write goes into the scratch folder; no proxies.
    for key in [k for k in os.environ if k.lower().endswith("_proxy")]:
        del os.environ[key]
    os.environ.update(HOME=home, TMPDIR=home, JUPYTER_RUNTIME_DIR=os.path.join(home, "runtime"),
                      IPYTHONDIR=os.path.join(home, "ipython"), MPLCONFIGDIR=os.path.join(home, "mpl"),
                      XDG_CACHE_HOME=os.path.join(home, ".cache"),  # and PyTorch's caches, which a grader
                      TORCHINDUCTOR_CACHE_DIR=os.path.join(home, "torchinductor"),  # process may have set
                      TRITON_CACHE_DIR=os.path.join(home, "triton"),
                      # one thread per kernel: the grader runs one submission per core, and threads of
                      # neighbouring kernels that wait for each other would slow every submission down
                      OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    if job.get("data_dir"):
        os.environ["MNISTLAB_DATA"] = job["data_dir"]  # the grader's data, read-only here
    os.chdir(scratch)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    return done


def run_job(job):
    """In the forked child: sandbox this process, then run nbgrader (or the clean scoring). Returns an exit code."""
    done = prepare(job)
    scratch = job["scratch"]
    if job.get("kind") == "score":  # a function named by the job, on the hand-in folder; its result as JSON
        Path(scratch, "grader", "sandbox-score.json").write_text(json.dumps(done))
        module, name = job["entry"].split(":")
        function = getattr(importlib.import_module(module), name)
        results = function(os.path.join(scratch, "hand-in"), **job.get("kwargs", {}))
        Path(scratch, "grader", job.get("result", "result.json")).write_text(json.dumps(results))
        return 0

    os.makedirs(os.path.join(scratch, "hand-in"), exist_ok=True)
    os.environ["JUPYTER_PATH"] = str(kernel_spec(job))
    os.environ["MNISTLAB_HAND_IN"] = os.path.join(scratch, "hand-in")
    Path(scratch, "grader", "sandbox.json").write_text(json.dumps(done))

    from nbgrader.apps.nbgraderapp import NbGraderApp

    sys.argv = ["nbgrader", *job["argv"]]
    code = 0
    try:
        NbGraderApp.launch_instance()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    save_scores(job)
    return code


def save_scores(job):
    """Read what nbgrader wrote into the scratch gradebook and save it as scores.json."""
    import sqlite3

    from nbgrader.api import Gradebook, MissingEntry

    # The kernel never sees the scratch gradebook (grader/jail.py); if it did, a trigger planted in it could
    # rewrite the scores nbgrader saves. Refuse such a gradebook rather than trust it.
    with sqlite3.connect(job["db_url"][len("sqlite:///"):]) as db:
        if db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone()[0]:
            print("the scratch gradebook holds triggers it was not made with: scores refused", flush=True)
            return
    with Gradebook(job["db_url"], job["course_id"]) as gb:
        try:
            submission = gb.find_submission(job["assignment"], job["student"])
        except MissingEntry:
            return
        notebooks = [{
            "name": nb.name,
            "late_submission_penalty": nb.late_submission_penalty,
            "grades": [{"name": g.name, "auto_score": g.auto_score, "max_score": g.max_score,
                        "needs_manual_grade": g.needs_manual_grade} for g in nb.grades],
            "comments": [{"name": c.name, "auto_comment": c.auto_comment} for c in nb.comments],
        } for nb in submission.notebooks]
        timestamp = submission.timestamp.isoformat() if submission.timestamp else None
    Path(job["scratch"], "grader", "scores.json").write_text(json.dumps({"timestamp": timestamp, "notebooks": notebooks}))


def serve(preload=()):
    """The zygote: import nbgrader (and `preload`) once, then fork one child per job read from stdin."""
    die_with_parent()
    import nbgrader.apps.nbgraderapp  # noqa: F401 (the point: children start with it imported)
    import nbgrader.api  # noqa: F401

    warm_imports()
    # one thread per child, as prepare() says, already for the libraries preloaded here (OpenBLAS sizes its
    # thread pool when it is loaded)
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    for name in preload:
        with contextlib.suppress(Exception), contextlib.redirect_stdout(sys.stderr):  # (stdout: the jobs' replies)
            importlib.import_module(name)  # (one that fails here fails again, and is reported, in the child)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                die_with_parent()
                code = run_job(job)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush() if sys.stdout else None
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "exitcode": os.waitstatus_to_exitcode(status)}), flush=True)


def warm_imports():
    """What every autograde child would otherwise import or build again, done once here before the forks: the
    modules nbgrader imports only when it runs (jupyter_client's check for ipykernel's spec, which imports IPython;
    the SQLite dialect of the scratch gradebook) and nbformat's compiled schema validators (0.04 s each).
    Modules and caches only: nothing of any job, nothing a child could tell another child by."""
    for name in ("ipykernel.kernelspec", "IPython", "sqlite3", "sqlalchemy.dialects.sqlite",
                 "nbconvert.preprocessors.execute", "nbclient.client", "jupyter_client.manager"):
        with contextlib.suppress(ImportError), contextlib.redirect_stdout(sys.stderr):  # (stdout: the jobs' replies)
            importlib.import_module(name)
    with contextlib.suppress(Exception):
        import nbformat
        from nbformat.validator import get_validator

        for relax in (False, True):
            get_validator(4, nbformat.v4.nbformat_minor, relax_add_props=relax)


# --- in the Dask worker -----------------------------------------------------------------------

MAX_PROCESSES = 200  # a fork bomb is stopped here, or by the memory limit, whichever comes first
PSS_EVERY = 0.5  # seconds between readings of the tree's PSS while its RSS is within the memory limit (see Zygote.run)
WALL_BACKSTOP = 3  # wall-time limit = this x the CPU-time limit (a kernel that sleeps uses no CPU)


class Zygote:
    """A `python -m grader.sandbox` helper process; `run` grades one job in a fresh sandboxed child."""

    def __init__(self, preload=()):
        """preload: modules the zygote imports before its first fork (e.g. PyTorch for the clean scoring)."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent.parent), os.environ.get("PYTHONPATH", "")]),
                   **{PARENT_PID: str(os.getpid())})  # (see die_with_parent)
        self.preload = tuple(preload)
        self.process = subprocess.Popen([sys.executable, "-m", "grader.sandbox", *self.preload], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env)
        self.pending = b""

    def message(self, timeout=None):
        """The zygote's next JSON line, or None if none came within `timeout` seconds."""
        while b"\n" not in self.pending:  # read the pipe ourselves: a buffered reader would hide lines from select
            if not select.select([self.process.stdout], [], [], timeout)[0]:
                return None
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"the grading helper process (zygote) exited with code {self.process.wait()}")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def alive(self):
        return self.process.poll() is None

    def run(self, job, cpu_time, memory_bytes, poll=0.1):
        """Run `job`; returns (exit code or None, reason it was killed or None, peak memory in bytes).

        `cpu_time`: CPU seconds the job's processes may use together (user + system); wall time is
        limited to WALL_BACKSTOP times that."""
        self.process.stdin.write(json.dumps(job).encode() + b"\n")
        self.process.stdin.flush()
        pid = self.message()["pid"]
        start, peak, reason, seen, used, pss_read = time.monotonic(), 0, None, {}, {}, -PSS_EVERY
        while True:
            done = self.message(timeout=poll)
            if done:
                exitcode = done["exitcode"]
                break
            tree = process_tree(pid)
            seen.update({p.pid: p for p in tree})
            used.update({p.pid: cpu_seconds(p, used.get(p.pid, 0.0)) for p in tree})  # an exited one keeps its last reading
            cpu, wall = sum(used.values()), time.monotonic() - start
            # PSS (shared pages split between the processes) is what counts; reading it (smaps_rollup) costs ~1 ms a
            # process, RSS (statm) a tenth of that. PSS <= RSS: while the tree's RSS is within the limit, so is its
            # PSS, and PSS is read only every PSS_EVERY seconds, for the peak; over the limit by RSS, at every poll.
            resident = sum(resident_of(p) for p in tree)
            if resident > memory_bytes or wall - pss_read >= PSS_EVERY:
                used_memory, pss_read = sum(memory_of(p) for p in tree), wall
            else:
                used_memory = 0
            peak = max(peak, used_memory)
            if reason is None and len(tree) > MAX_PROCESSES:
                reason = f"process limit: the notebook started {len(tree)} processes (at most {MAX_PROCESSES}) and was killed"
            elif reason is None and used_memory > memory_bytes:
                reason = (f"memory limit: the notebook used {used_memory / 2**20:.0f} MiB > {memory_bytes / 2**20:.0f} MiB "
                          "and was killed")
            elif reason is None and cpu > cpu_time:
                reason = f"time limit: the notebook used {cpu:.0f} s of CPU time (at most {cpu_time:.0f} s) and was killed"
            elif reason is None and wall > WALL_BACKSTOP * cpu_time:
                reason = (f"wall-time limit: still running after {wall:.0f} s ({WALL_BACKSTOP}x the CPU-time limit of "
                          f"{cpu_time:.0f} s) and was killed")
            if reason:
                kill(tree)
        kill([p for p in seen.values() if p.is_running()])  # leftovers (a kernel that outlived nbgrader)
        return (None if reason else exitcode), reason, peak


def process_tree(pid):
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(process, last=0.0):
    """User + system CPU seconds of `process` (its threads included); `last` once it is gone.

    Its children are counted as processes of their own (children_* would count them twice); work done
    by children that live less than a poll is missed, and is what the wall-time backstop is for."""
    try:
        t = process.cpu_times()
        return max(last, t.user + t.system)
    except psutil.Error:
        return last


def resident_of(process):
    """The process's resident memory (RSS), >= its PSS; 0 once it is gone."""
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def memory_of(process):
    """The process's proportional share of memory (PSS): a page shared by k processes counts 1/k in each,
    so forked children (a DataLoader's workers) are not counted several times over, as RSS would.
    Falls back to RSS where PSS cannot be read."""
    try:
        return process.memory_full_info().pss
    except (psutil.Error, AttributeError):
        try:
            return process.memory_info().rss
        except psutil.Error:
            return 0


def kill(processes):
    for process in processes:
        try:
            process.kill()  # psutil checks that the pid still belongs to the same process
        except psutil.Error:
            pass


_idle, _lock = [], threading.Lock()


def keep_warm(count, preload=()):
    """At least `count` idle zygotes that preloaded `preload` in this process, the missing ones started now: one for
    each Dask worker that grades in this process (a local run's workers are threads of the coordinator)."""
    preload = tuple(preload)
    with _lock:
        _idle[:] = [z for z in _idle if z.alive()]
        _idle.extend(Zygote(preload) for _ in range(count - sum(z.preload == preload for z in _idle)))


@contextlib.contextmanager
def zygote(preload=()):
    """A zygote for one job: an idle one of this process that preloaded the same modules (e.g. started by a
    warm-up), else a new one. The autograde children come from a zygote without `preload`: PyTorch's pages in
    nbgrader's process would count against the notebook's memory limit."""
    preload = tuple(preload)
    with _lock:
        _idle[:] = [z for z in _idle if z.alive()]
        ready = [z for z in _idle if z.preload == preload][:1]
        for helper in ready:
            _idle.remove(helper)
    helper = ready[0] if ready else Zygote(preload)
    try:
        yield helper
    finally:
        if helper.alive():
            with _lock:
                _idle.append(helper)


if __name__ == "__main__":
    serve(sys.argv[1:])
