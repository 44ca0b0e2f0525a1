"""The grader on a real Dask cluster, with a worker killed mid-batch.

The test starts `dask scheduler` and two `dask worker` processes itself (one thread each, free ports,
their own temporary folder), grades a class of the toy course (tests/fixtures/grader/toycourse.py)
through `python -m grader autograde --scheduler`, and SIGKILLs one worker while its first submission
is being graded (its student's kernel running). It checks: the same grades as a local run of the same
class (`--workers 2`, no scheduler), a "worker lost; N submission(s) re-run" line naming the re-run
submission, no scratch folder left in the workers' temporary folder, and no process left of the killed
worker's grading (nbgrader, the jail, the kernel) nor, once the cluster is stopped, of any worker.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grader"))
import gradebooks  # noqa: E402
import toycourse  # noqa: E402

from grader import autograde  # noqa: E402
from grader.build import tool_env  # noqa: E402

pytestmark = pytest.mark.timeout(400)
A = toycourse.ASSIGNMENT
CLASS = {"ann": "correct", "ben": "wrong", "cat": "blank", "dan": "crash"}
EXPECTED = {"correct": 4.0, "wrong": 2.0, "blank": 0.0, "crash": 0.0}
CHECKOUT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.create_server(("127.0.0.1", 0)) as server:
        return server.getsockname()[1]


def grades(course):
    return gradebooks.scores(course, A)


def ours(marker):
    """Processes whose command line or environment mentions `marker` (the test's temporary folder)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if marker in " ".join(process.info["cmdline"] or []) or any(marker in v for v in process.environ().values()):
                found.append(process)
        except psutil.Error:
            pass
    return found


def grading(pid, scratch_root):
    """The student whose submission worker `pid` grades, while its kernel runs (its command line names the
    scratch course: <student>-<random>.<pid>@<host>); else None."""
    try:
        for process in psutil.Process(pid).children(recursive=True):
            found = re.search(re.escape(str(scratch_root)) + r"/([^/-]+)-", " ".join(process.cmdline()))
            if found and "ipykernel" in " ".join(process.cmdline()):
                return found.group(1)
    except psutil.Error:
        pass
    return None


def stray(process, workers):
    """True for a process of a grading that should be over: a jail or kernel, or a grading helper (zygote)
    child that is not a live worker's own helper (nbgrader's sandboxed process)."""
    try:
        line = " ".join(process.cmdline())
        return ("grader.jail" in line or "ipykernel" in line or
                ("grader.sandbox" in line and process.ppid() not in workers))
    except psutil.Error:
        return False


def test_killed_worker_on_a_real_cluster(tmp_path):
    from dask.distributed import Client

    tmp = Path(tempfile.mkdtemp(prefix="mnistlab-cluster-"))  # the workers' TMPDIR: their scratch root is in it
    tmp.chmod(0o755)
    scratch_root = tmp / "mnistlab-grader"
    env = tool_env(PYTHONPATH=str(CHECKOUT), TMPDIR=str(tmp), MNISTLAB_QUIET="1")
    course = toycourse.make_course(tmp_path / "course", work_seconds=1.5, cell_timeout=60)
    for student, variant in CLASS.items():
        toycourse.submit(course, student, variant)
    local = tmp_path / "local"
    shutil.copytree(course, local)
    command = [sys.executable, "-m", "grader", "autograde", A, "--memory", "1G", "--no-progress"]
    processes = []
    try:
        port = free_port()  # the cluster starts while the local run grades
        address = f"tcp://127.0.0.1:{port}"
        processes.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                           "--port", str(port), "--no-dashboard"], env=env, stderr=subprocess.DEVNULL))
        processes += [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                        "--no-nanny", "--no-dashboard", "--memory-limit", "0", "--name", f"w{i}"],
                                       env=env, stderr=subprocess.DEVNULL) for i in range(2)]
        start = time.monotonic()
        run = subprocess.run([*command, "--course", str(local), "--workers", "2"], env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        local_seconds = time.monotonic() - start

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
            pids = client.run(os.getpid)
            start = time.monotonic()
            coordinator = subprocess.Popen([*command, "--course", str(course), "--scheduler", address], env=env,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            running, deadline = {}, time.time() + 120
            while not running and time.time() < deadline and coordinator.poll() is None:
                running = {a: s for a, s in ((a, grading(pid, scratch_root)) for a, pid in pids.items()) if s}
                time.sleep(0.05)
            assert running, "no worker was seen grading"
            victim, running = next(iter(running.items()))
            os.kill(pids[victim], signal.SIGKILL)  # while `running`'s kernel runs there
            output, _ = coordinator.communicate(timeout=300)
            cluster_seconds = time.monotonic() - start
            print(output)
            assert coordinator.returncode == 0, output
            time.sleep(1)
            alive = {pid for pid in pids.values() if psutil.pid_exists(pid)}
            leftovers = [p for p in ours(str(tmp)) if stray(p, alive)]
            assert not leftovers, f"processes left of the grading: {[p.cmdline() for p in leftovers]}"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        deadline = time.time() + 15
        while ours(str(tmp)) and time.time() < deadline:
            time.sleep(0.5)
        left = ours(str(tmp))
        scratch_left = sorted(os.listdir(scratch_root)) if scratch_root.is_dir() else []
        for process in left:
            process.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    assert not left, f"processes left after the cluster stopped: {[p.pid for p in left]}"
    assert scratch_left == [], "the killed worker's scratch folder was swept"

    # The same grades as the local run, and as the toy course says.
    assert grades(course) == grades(local)
    assert {s: sum(g.values()) for s, g in grades(course).items()} == {s: EXPECTED[v] for s, v in CLASS.items()}
    lost = re.search(r"worker lost; 1 submission\(s\) re-run on other workers: ([^.;]*)[.;]", output)
    assert lost, output
    assert lost.group(1) == f"{A}/{running}"
    records = [autograde.read_record(autograde.course_directory(course)[0], A, s) for s in CLASS]
    per_submission = sorted(r.seconds for r in records)
    print(f"\nlocal run {local_seconds:.1f} s, cluster run with a kill {cluster_seconds:.1f} s; seconds per submission "
          f"(inside a worker, {toycourse.ASSIGNMENT} with 1.5 s of work): median {per_submission[len(per_submission) // 2]}, "
          f"max {per_submission[-1]}")


ORPHAN = """
import os, sys, time
from grader import linux
read, write = os.pipe()
if os.fork() == 0:  # the child asks to die with its parent only once the parent is gone (the race)
    os.close(write)
    os.read(read, 1)  # (end of file: the parent exited)
    time.sleep(0.3)
    linux.die_with_parent()
    open(sys.argv[1], "w").write("an orphan runs on")
    os._exit(0)
os._exit(0)
"""


def test_die_with_parent_when_the_parent_is_already_gone(tmp_path):
    """die_with_parent() in a process whose parent died before the call exits: after a fork (the parent's pid
    recorded at the fork), and in a program started with GRADER_PARENT_PID (a jail whose nbgrader is gone). A
    stale GRADER_PARENT_PID that names a live process which is not the parent changes nothing."""
    env = tool_env(PYTHONPATH=str(CHECKOUT))
    env.pop("GRADER_PARENT_PID", None)
    marker = tmp_path / "orphan"
    subprocess.run([sys.executable, "-c", ORPHAN, str(marker)], env=env, check=True, timeout=30)
    time.sleep(1.5)
    assert not marker.exists(), "the forked child outlived its parent"

    said = "from grader import linux; linux.die_with_parent(); print('runs')"
    gone = subprocess.Popen(["true"])
    gone.wait()
    for parent, expected in ((gone.pid, ""), (os.getpid(), "runs"), (1, "runs")):
        run = subprocess.run([sys.executable, "-c", said], env=dict(env, GRADER_PARENT_PID=str(parent)),
                             capture_output=True, text=True, timeout=30)
        assert run.stdout.strip() == expected, (parent, run.stdout, run.stderr)


def test_a_local_cluster_is_threads_of_this_process_without_dasks_housekeeping():
    """A local cluster's workers are threads of the coordinating process (no worker process to start and stop),
    created with grader/cluster.py's QUIET_CLUSTER configuration: no task profiler sampling every 10 ms, ticks
    every second instead of every 20 ms, no work stealing (at Dask's defaults each worker took 4-6% of a core)."""
    import dask

    from grader.cluster import start_client, workers_per_process

    client, cluster = start_client(None, 2)
    try:
        seen = client.run(lambda dask_worker: (os.getpid(), "profile" in dask_worker.periodic_callbacks,
                                               dask_worker.periodic_callbacks["tick"].callback_time,
                                               dask_worker.periodic_callbacks["monitor"].callback_time))
        stealing = client.run_on_scheduler(lambda dask_scheduler: "stealing" in dask_scheduler.extensions)
        shared = workers_per_process(client)
    finally:
        client.close()
        cluster.close()
    assert list(seen.values()) == [(os.getpid(), False, 1000, 5000)] * 2
    assert not stealing and shared == 2
    assert dask.config.get("distributed.worker.profile.enabled") is True  # this process's own configuration is kept


def test_warm_up_keeps_one_zygote_per_worker_of_the_process():
    """warm_up runs once per worker: two workers in one process get two zygotes, and a second warm-up (another
    run with the same client) starts no more."""
    from grader import sandbox
    from grader.execute import warm_up

    def plain():
        return [z for z in sandbox._idle if z.alive() and not z.preload]

    before = plain()
    try:
        warm_up(zygotes=2)
        warm_up(zygotes=2)
        assert len(plain()) == max(2, len(before))
    finally:
        for helper in plain():
            if helper not in before:
                sandbox._idle.remove(helper)
                helper.process.kill()
                helper.process.wait()


def test_the_quiet_configuration_as_environment_variables_reaches_dask():
    """What the README tells an instructor to set for `dask scheduler` / `dask worker` processes started by other
    means (dask-jobqueue, Kubernetes): Dask reads it back as QUIET_CLUSTER."""
    import json

    from grader.cluster import QUIET_CLUSTER, quiet_cluster_environment

    read = subprocess.run([sys.executable, "-c", "import dask, json, sys; "
                           f"print(json.dumps({{k: dask.config.get(k) for k in {list(QUIET_CLUSTER)!r}}}))"],
                          env=dict(os.environ, **quiet_cluster_environment()), capture_output=True, text=True, check=True)
    assert json.loads(read.stdout) == QUIET_CLUSTER
