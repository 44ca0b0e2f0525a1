"""Benchmark: plain sequential `nbgrader autograde` vs `python -m grader autograde` on 2 workers.

The same N submissions (default 20) of one toy assignment whose notebook burns --work seconds of CPU
(standing in for a real notebook's training) are graded three ways, each in its own copy of the course:

  1. plain nbgrader: `nbgrader autograde toy`, one process, one student after another;
  2. `python -m grader autograde toy --workers 2`: a local Dask cluster, each submission sandboxed;
  3. the same on a stand-in cluster: `dask scheduler` and two `dask worker` processes on 127.0.0.1.

Prints the wall times, the speed-up of 2 over 1 (target >= 1.8x on 2 cores), the per-submission
overhead beyond the notebook's own compute (target <= 3 s), and asserts that all three give
identical grades. Run: .venv/bin/python bench/bench_grader.py [--n 20] [--work 5]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "fixtures" / "grader")]
import toycourse  # noqa: E402

from grader.build import tool_env  # noqa: E402

VARIANTS = ["correct"] * 3 + ["wrong", "blank"]  # cycled over the class: every grade appears


def grades(course):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "toycourse") as gb:
        return {s.student.id: {g.name: g.score for nb in s.notebooks for g in nb.grades}
                for s in gb.find_assignment(toycourse.ASSIGNMENT).submissions}


def notebook_compute(course):
    """Seconds the notebook itself takes to run (cells only, its kernel already started)."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(next((course / "submitted").glob("*/toy/toy.ipynb")), as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", allow_errors=True)
    with client.setup_kernel():
        start = time.perf_counter()
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        return time.perf_counter() - start


def timed(command, cwd, env):
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0 and "autograde" not in command[:4]:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{done.stdout}{done.stderr}")
    return seconds, done.stdout + done.stderr


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="submissions (default 20)")
    parser.add_argument("--work", type=float, default=5.0, help="CPU seconds each notebook burns (default 5)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    env = tool_env(PYTHONPATH=str(ROOT), MNISTLAB_QUIET="1", MNISTLAB_DATA_SOURCE="offline")
    scratch = Path(tempfile.mkdtemp(prefix="bench-grader-"))
    base = toycourse.make_course(scratch / "base", work_seconds=args.work, cell_timeout=120)
    for i in range(args.n):
        toycourse.submit(base, f"s{i:02d}", VARIANTS[i % len(VARIANTS)])
    courses = {}
    for name in ("plain", "local", "cluster"):
        courses[name] = scratch / name
        shutil.copytree(base, courses[name], ignore=shutil.ignore_patterns("release"))
    compute = notebook_compute(base)
    print(f"{args.n} submissions; the notebook's own compute: {compute:.1f} s each; {os.cpu_count()} cores")

    python = sys.executable
    shutil.copytree(base / "release", courses["plain"] / "release")
    timed([python, "-m", "nbgrader", "generate_assignment", "toy", "--force"], courses["plain"], env)
    plain, _ = timed([python, "-m", "nbgrader", "autograde", "toy"], courses["plain"], env)
    print(f"plain sequential nbgrader autograde:            {plain:7.1f} s  ({plain / args.n:.2f} s per submission)")

    local, out = timed([python, "-m", "grader", "autograde", "toy", "--course", courses["local"], "--workers",
                        str(args.workers), "--no-progress"], ROOT, env)
    print(f"grader autograde, local cluster, {args.workers} workers:     {local:7.1f} s  -> speed-up {plain / local:.2f}x "
          f"(target >= 1.8x on 2 cores)")

    port = socket.create_server(("127.0.0.1", 0)).getsockname()[1]
    scheduler = subprocess.Popen([python, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                                  str(port), "--dashboard-address", ":0"], env=env, stderr=subprocess.DEVNULL)
    workers = [subprocess.Popen([python, "-m", "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                                 "--no-dashboard"], env=env, stderr=subprocess.DEVNULL) for _ in range(args.workers)]
    try:
        time.sleep(3)
        cluster, out_cluster = timed([python, "-m", "grader", "autograde", "toy", "--course", courses["cluster"],
                                      "--scheduler", f"tcp://127.0.0.1:{port}", "--no-progress"], ROOT, env)
    finally:
        for process in [*workers, scheduler]:
            process.terminate()
            process.wait(timeout=30)
    print(f"grader autograde, stand-in cluster (separate processes): {cluster:7.1f} s  -> speed-up {plain / cluster:.2f}x")

    per_submission = local * args.workers / args.n
    tasks = [json.loads(p.read_text())["seconds"] for p in (courses["local"] / "autograded").glob("*/toy/.grader.json")]
    print(f"per-submission overhead beyond the notebook's compute ({compute:.2f} s):\n"
          f"  inside a worker (scratch course, sandbox, nbgrader, kernel start, results back): "
          f"{statistics.mean(tasks) - compute:.2f} s (mean task {statistics.mean(tasks):.2f} s; target <= 3 s)\n"
          f"  whole run, cluster start-up included: {per_submission - compute:.2f} s "
          f"(wall x workers / submissions = {per_submission:.2f} s)\n"
          f"  plain nbgrader, one process: {plain / args.n - compute:.2f} s")
    print(f"load average while measuring (other processes share the cores): {os.getloadavg()[0]:.1f}")
    reference = grades(courses["plain"])
    assert len(reference) == args.n, f"plain nbgrader graded {len(reference)} of {args.n}"
    assert grades(courses["local"]) == reference, f"local grades differ:\n{out}"
    assert grades(courses["cluster"]) == reference, f"stand-in cluster grades differ:\n{out_cluster}"
    print(f"identical grades from all three ({sum(sum(g.values()) for g in reference.values()):g} points in total)")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
