"""Benchmark: plain sequential `nbgrader autograde` vs `python -m grader autograde` on 2 workers, against issue #14's targets.

The same N submissions (default 20) of a class are graded three ways, each in its own copy of the course:

  1. plain nbgrader: `nbgrader autograde ASSIGNMENT`, one process, one student after another;
  2. `python -m grader autograde ASSIGNMENT --workers 2`: a local Dask cluster, each submission sandboxed;
  3. the same on a stand-in cluster: `dask scheduler` and two `dask worker` processes on 127.0.0.1, started with
     the environment the README gives for a cluster (grader/cluster.py: quiet_cluster_environment).

Classes (--classes, default both):
  toy  the toy assignment of tests/fixtures/grader, whose notebook burns --work seconds of CPU (standing in for a
       real notebook's training);
  ps1  nbgrader's own documentation course (installed with nbgrader): its two students' submissions of two
       notebooks, cycled over the N students (a foreign course: no mnistlab, no clean checks).

For each class it prints the wall times, the figures the targets are about, each target as met or NOT MET, and
asserts that all three ways give identical grades:
  speed-up          plain wall / grader wall (local cluster)                              >= 1.8x on 2 cores
  overhead          per submission, beyond nbgrader's own work: the grader's mean task in a worker minus plain
                    nbgrader's time per submission (its kernel start, the notebook, its bookkeeping) <= 1 s
  first line        seconds from the command's start to its first line of output (what it prepares) <= 2 s
  start cost        fixed cost of a run: the grader's wall minus the workers' grading time
                    (sum of task times / workers): imports, template gradebook, cluster, shutdown     <= 5 s
Timings are only meaningful on an otherwise quiet machine: the load average is printed with them.
Run: .venv/bin/python bench/bench_grader.py [--n 20] [--work 5] [--classes toy,ps1]
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
from grader.build import tool_env  # noqa: E402 (first: grader/__init__.py speeds up the imports below)
from grader.cluster import quiet_cluster_environment  # noqa: E402

import toycourse  # noqa: E402

VARIANTS = ["correct"] * 3 + ["wrong", "blank"]  # cycled over the toy class: every grade appears
TARGETS = {"speed-up": 1.8, "overhead": 1.0, "first line": 2.0, "start cost": 5.0}


def grades(course, course_id, assignment):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id) as gb:
        return {s.student.id: {f"{nb.name}/{g.name}": g.score for nb in s.notebooks for g in nb.grades}
                for s in gb.find_assignment(assignment).submissions}


def notebook_compute(course, assignment):
    """Seconds the notebooks of one submission take to run (cells only, their kernel already started)."""
    import nbformat
    from nbclient import NotebookClient

    seconds = 0.0
    for path in sorted(next((course / "submitted").iterdir()).joinpath(assignment).glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(notebook, timeout=600, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(path.parent)}})
        with client.setup_kernel():
            start = time.perf_counter()
            for index, cell in enumerate(notebook.cells):
                client.execute_cell(cell, index)
            seconds += time.perf_counter() - start
    return seconds


def timed(command, cwd, env):
    """(wall seconds, output, seconds to the first line of output) of a command."""
    start, first, lines = time.perf_counter(), None, []
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if first is None and line.strip():
            first = time.perf_counter() - start
        lines.append(line)
    process.wait()
    seconds, out = time.perf_counter() - start, "".join(lines)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{out}")
    return seconds, out, first


# --- the classes ----------------------------------------------------------------------------------

def toy_class(folder, n, work):
    base = toycourse.make_course(folder, work_seconds=work, cell_timeout=120)
    for i in range(n):
        toycourse.submit(base, f"s{i:02d}", VARIANTS[i % len(VARIANTS)])
    return base, "toycourse", toycourse.ASSIGNMENT


def ps1_class(folder, n, env):
    import nbgrader

    docs = Path(nbgrader.__file__).parent / "docs" / "source" / "user_guide"
    if not (docs / "source" / "ps1").is_dir():
        return None
    shutil.copytree(docs / "source" / "ps1", folder / "source" / "ps1")
    (folder / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "example_course"\n')
    students = ("bitdiddle", "hacker")
    for i in range(n):
        shutil.copytree(docs / "submitted" / students[i % 2] / "ps1", folder / "submitted" / f"s{i:02d}" / "ps1")
    # The docs' notebooks carry nbgrader's old metadata: nbgrader itself asks for `nbgrader update` first.
    subprocess.run([sys.executable, "-m", "nbgrader", "update", "."], cwd=folder, env=env, check=True, capture_output=True)
    return folder, "example_course", "ps1"


# --- one class, three ways --------------------------------------------------------------------------

def verdict(name, value, shown):
    met = value >= TARGETS[name] if name == "speed-up" else value <= TARGETS[name]
    bound = ">=" if name == "speed-up" else "<="
    return f"  {name + ':':12s} {shown:58s} target {bound} {TARGETS[name]:g}: {'met' if met else 'NOT MET'}", met


def bench(label, base, course_id, assignment, n, workers, env, scratch):
    python = sys.executable
    courses = {}
    for name in ("plain", "local", "cluster"):
        courses[name] = scratch / f"{label}-{name}"
        shutil.copytree(base, courses[name], ignore=shutil.ignore_patterns("release", "gradebook.db"))
    compute = notebook_compute(base, assignment)
    print(f"\n== {label}: {n} submissions of {assignment}; the notebooks' own compute: {compute:.2f} s a submission; "
          f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")

    timed([python, "-m", "nbgrader", "generate_assignment", assignment, "--force"], courses["plain"], env)
    plain, _, _ = timed([python, "-m", "nbgrader", "autograde", assignment], courses["plain"], env)
    print(f"plain sequential nbgrader autograde:                      {plain:7.1f} s  ({plain / n:.2f} s a submission)")

    local, out, first = timed([python, "-m", "grader", "autograde", assignment, "--course", courses["local"],
                               "--workers", str(workers), "--no-progress"], ROOT, env)
    print(f"grader autograde, local cluster, {workers} workers:               {local:7.1f} s  -> {plain / local:.2f}x")

    port = socket.create_server(("127.0.0.1", 0)).getsockname()[1]
    env = dict(env, **quiet_cluster_environment())  # as the README tells an instructor to start them
    scheduler = subprocess.Popen([python, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                                  str(port), "--dashboard-address", ":0"], env=env, stderr=subprocess.DEVNULL)
    started = [subprocess.Popen([python, "-m", "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                                 "--no-dashboard"], env=env, stderr=subprocess.DEVNULL) for _ in range(workers)]
    try:
        time.sleep(3)
        cluster, out_cluster, _ = timed([python, "-m", "grader", "autograde", assignment, "--course", courses["cluster"],
                                         "--scheduler", f"tcp://127.0.0.1:{port}", "--no-progress"], ROOT, env)
    finally:
        for process in [*started, scheduler]:
            process.terminate()
            process.wait(timeout=30)
    print(f"grader autograde, stand-in cluster (separate processes): {cluster:7.1f} s  -> {plain / cluster:.2f}x")

    tasks = [json.loads(p.read_text())["seconds"] for p in (courses["local"] / "autograded").glob(f"*/{assignment}/.grader.json")]
    task = statistics.mean(tasks)
    overhead = task - plain / n
    start_cost = local - sum(tasks) / workers
    whole = local * workers / n - plain / n
    lines = [verdict("speed-up", plain / local, f"{plain / local:.2f}x (plain {plain:.1f} s / grader {local:.1f} s)"),
             verdict("overhead", overhead, f"{overhead:+.2f} s (task {task:.2f} s - plain {plain / n:.2f} s)"),
             verdict("first line", first, f"{first:.2f} s ({out.strip().splitlines()[0][:40]}...)"),
             verdict("start cost", start_cost, f"{start_cost:.1f} s (wall {local:.1f} s - {sum(tasks):.1f} s / {workers})")]
    print(f"per submission: plain nbgrader {plain / n:.2f} s ({plain / n - compute:.2f} s beyond the notebooks' compute); "
          f"grader task in a worker {task:.2f} s ({task - compute:.2f} s beyond it); whole run, start included: "
          f"{whole:+.2f} s beyond plain (wall x workers / submissions = {local * workers / n:.2f} s)")
    for line, _ in lines:
        print(line)
    reference = grades(courses["plain"], course_id, assignment)
    assert len(reference) == n, f"plain nbgrader graded {len(reference)} of {n}"
    assert grades(courses["local"], course_id, assignment) == reference, f"local grades differ:\n{out}"
    assert grades(courses["cluster"], course_id, assignment) == reference, f"stand-in cluster grades differ:\n{out_cluster}"
    print(f"  identical grades from all three ({sum(sum(g.values()) for g in reference.values()):g} points in total): met")
    print(f"load average after measuring (other processes share the cores): {os.getloadavg()[0]:.1f}")
    return all(met for _, met in lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="submissions (default 20)")
    parser.add_argument("--work", type=float, default=5.0, help="CPU seconds each toy notebook burns (default 5)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--classes", default="toy,ps1", help="toy, ps1 or both (default toy,ps1)")
    args = parser.parse_args()
    env = tool_env(PYTHONPATH=str(ROOT), MNISTLAB_QUIET="1", MNISTLAB_DATA_SOURCE="offline")
    scratch = Path(tempfile.mkdtemp(prefix="bench-grader-"))
    met = {}
    try:
        for label in args.classes.split(","):
            if label == "toy":
                made = toy_class(scratch / "toy-base", args.n, args.work)
            elif label == "ps1":
                made = ps1_class(scratch / "ps1-base", args.n, env)
                if made is None:
                    print("\n== ps1: nbgrader's documentation course is not installed with nbgrader: skipped")
                    continue
            else:
                raise SystemExit(f"unknown class {label!r}: toy or ps1")
            met[label] = bench(label, *made, args.n, args.workers, env, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("\n" + "; ".join(f"{label}: {'every target met' if ok else 'NOT every target met'}" for label, ok in met.items()))


if __name__ == "__main__":
    main()
