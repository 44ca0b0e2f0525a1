"""The instructor grader end to end, on a toy nbgrader course (tests/fixtures/grader/toycourse.py).

One small class (correct, blank, wrong, crash, endless loop, memory bomb, and a notebook that tries
to escape its sandbox) is graded once in parallel on a two-worker Dask LocalCluster; the tests
check it against plain sequential `nbgrader autograde`, against the expected scores and reasons,
and then re-run it: unchanged, changed, with a worker process killed mid-run, and from the command line on
a stand-in cluster (scheduler and workers as separate processes) with the coordinator killed.
Timings are measured in bench/bench_grader.py, not here.
"""

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grader"))
import gradebooks  # noqa: E402
import toycourse  # noqa: E402
from hosts import host_address  # noqa: E402

from grader.cluster import start_client  # noqa: E402
from grader import GraderError, autograde, collect, export  # noqa: E402
from grader.build import tool_env  # noqa: E402

pytestmark = pytest.mark.timeout(600)
A = toycourse.ASSIGNMENT
EXPECTED = {"correct": 4.0, "blank": 0.0, "wrong": 2.0, "crash": 0.0, "loop": 2.0, "memory": 0.0, "probe": 4.0}


def scores(course, db=None):
    return gradebooks.scores(course, A, db)




def probe_answers(course, port):
    """A submission that tries to remount / read-write, then to write the gradebook and another
    student's file and to reach a server on this machine; `square` is right only if all three were refused."""
    attempts = (f"import ctypes, socket\nrefused = []\n"
                f"ctypes.CDLL(None).mount(None, b'/', None, ctypes.c_ulong(32 | 4096), None)  # remount / read-write?\n"
                f"for path in [{str(course / 'gradebook.db')!r}, {str(course / 'submitted' / 'correct' / A / 'toy.ipynb')!r}]:\n"
                f"    try:\n        open(path, 'a').write('hacked')\n    except OSError:\n        refused.append(path)\n"
                f"try:\n    socket.create_connection(({host_address()!r}, {port}), timeout=3).close()\n"
                f"except OSError:\n    refused.append('network')\n"
                f"print('refused:', refused)\n"
                f"def square(x):\n    return x * x if len(refused) == 3 else 0")
    return attempts, "def cube(x):\n    return x ** 3"


@pytest.fixture(scope="module")
def client():
    c, cluster = start_client(workers=2)  # the grader's own local cluster
    with c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def graded(tmp_path_factory, client):
    """The toy class, graded once in parallel (memory limit 400 MiB, cell limit 5 s)."""
    course = toycourse.make_course(tmp_path_factory.mktemp("course"), cell_timeout=5)
    for variant in toycourse.VARIANTS:
        toycourse.submit(course, variant, variant)
    server = socket.create_server(("0.0.0.0", 0))  # what the probe must not reach
    toycourse.submit(course, "probe", answers=probe_answers(course, server.getsockname()[1]))
    before = (course / "submitted" / "correct" / A / "toy.ipynb").read_bytes()
    results = autograde.autograde(A, course, client=client, memory="400M", timeout=120, progress=False)
    server.close()
    assert (course / "submitted" / "correct" / A / "toy.ipynb").read_bytes() == before
    return course, results


def test_scores_and_failure_reasons(graded):
    course, results = graded
    assert {s: r.score for s, r in results.items()} == EXPECTED
    assert scores(course)["wrong"] == {"test_square": 0.0, "test_cube": 2.0}
    assert scores(course)["loop"] == {"test_square": 2.0, "test_cube": 0.0}  # only the looping exercise is lost
    assert results["loop"].status == "graded" and results["loop"].cell_errors["cube"] == "CellTimeoutError"
    assert results["crash"].status == "failed" and "kernel died" in results["crash"].reason
    assert results["memory"].status == "failed" and "memory limit" in results["memory"].reason
    for student in ("correct", "blank", "wrong", "loop", "probe"):
        assert results[student].status == "graded", results[student]


def test_sandbox_blocks_writes_and_network(graded):
    course, results = graded
    assert results["probe"].sandbox["network"].startswith("isolated")
    assert results["probe"].sandbox["filesystem"].startswith("read-only")
    assert results["probe"].score == 4.0  # all three attempts were refused inside the sandbox
    assert b"hacked" not in (course / "gradebook.db").read_bytes()


def test_failures_are_recorded_in_gradebook_and_export(graded, tmp_path):
    course, _ = graded
    grades, exercises = export.export(course, to=str(tmp_path))
    rows = {row["student_id"]: row for row in csv.DictReader(grades.open())}
    assert {s: float(r["score"]) for s, r in rows.items()} == EXPECTED
    notes = {(r["student_id"], r["exercise"]): r["note"] for r in csv.DictReader(exercises.open())}
    assert len(notes) == 2 * len(EXPECTED)
    assert "memory limit" in notes[("memory", "test_square")] and "kernel died" in notes[("crash", "test_cube")]
    assert notes[("correct", "test_square")] == ""
    record = autograde.read_record(autograde.course_directory(course)[0], A, "crash")
    assert record.status == "failed" and "kernel died" in record.reason


def test_parallel_grades_equal_sequential_nbgrader(graded, tmp_path):
    """Plain `nbgrader autograde` (one process, one student after another) gives the same grades."""
    course, _ = graded
    plain = tmp_path / "plain"
    shutil.copytree(course / "source", plain / "source")
    shutil.copy(course / "nbgrader_config.py", plain)
    for student in ("correct", "wrong", "crash"):  # no memory limit in plain nbgrader
        shutil.copytree(course / "submitted" / student, plain / "submitted" / student)
    for step in (["generate_assignment", A, "--force"], ["autograde", A]):
        subprocess.run([sys.executable, "-m", "nbgrader", *step], cwd=plain, env=tool_env(), capture_output=True, timeout=300)
    sequential = scores(plain)
    assert set(sequential) == {"correct", "wrong", "crash"}
    assert {s: g for s, g in scores(course).items() if s in sequential} == {
        s: {name: score or 0.0 for name, score in g.items()} for s, g in sequential.items()}


def test_rerun_skips_unchanged_and_regrades_changed(graded, client):
    course, results = graded
    again = autograde.autograde(A, course, client=client, memory="400M", timeout=120, progress=False)
    assert again == results  # nothing graded again: the records were read back
    toycourse.submit(course, "wrong", "correct")  # the student fixed it
    changed = autograde.autograde(A, course, client=client, memory="400M", timeout=120, progress=False)
    assert changed["wrong"].score == 4.0 and changed["wrong"].graded_at >= results["wrong"].graded_at
    assert {s: changed[s] for s in changed if s != "wrong"} == {s: results[s] for s in results if s != "wrong"}
    forced = autograde.autograde(A, course, client=client, students=["blank"], force=True, progress=False)
    assert forced["blank"].score == 0.0 and forced["blank"].hash == results["blank"].hash


@pytest.fixture
def process_client():
    """A local cluster of two worker processes (the grader's own local cluster has threads: a process to kill is
    what a cluster elsewhere has), restarted by their nannies when killed."""
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=0,
                           silence_logs=40)
    with Client(cluster) as c:
        yield c
    cluster.close()


def test_killed_worker_gives_the_same_grades(tmp_path, process_client):
    # Each submission burns 3 s of CPU, so that the kill below lands while it is being graded.
    client = process_client
    course = toycourse.make_course(tmp_path / "course", work_seconds=3.0, cell_timeout=60)
    for variant in ("correct", "wrong"):
        toycourse.submit(course, variant, variant)
    pids = client.run(os.getpid)
    assert os.getpid() not in pids.values()
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(autograde.autograde(A, course, client=client, progress=False)))
    worker.start()
    deadline = time.time() + 60
    while not any(client.processing().values()) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the task is grading now
    victim = next(address for address, tasks in client.processing().items() if tasks)
    os.kill(pids[victim], signal.SIGKILL)
    worker.join(timeout=300)
    assert {s: r.score for s, r in outcome.items()} == {"correct": 4.0, "wrong": 2.0}
    assert all(r.status == "graded" for r in outcome.values())
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_cli_on_stand_in_cluster_survives_killed_coordinator(graded, tmp_path):
    """`python -m grader autograde --scheduler` on a scheduler and two workers started as separate
    processes; the coordinator is killed after the first result, and the re-run finishes the class
    with the same grades as the uninterrupted run."""
    course, results = graded
    copy = tmp_path / "course"
    shutil.copytree(course, copy, ignore=shutil.ignore_patterns("autograded", "gradebook.db", "blank", "probe", "memory", "loop"))
    env = tool_env(PYTHONPATH=str(Path(__file__).parent.parent))
    port = socket.create_server(("127.0.0.1", 0)).getsockname()[1]
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", str(port), "--dashboard-address", ":0"], env=env, stderr=subprocess.DEVNULL)
    workers = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}",
                                 "--nthreads", "1", "--no-dashboard"], env=env, stderr=subprocess.DEVNULL) for _ in range(2)]
    command = [sys.executable, "-m", "grader", "autograde", A, "--course", str(copy), "--scheduler",
               f"tcp://127.0.0.1:{port}", "--memory", "400M", "--no-progress"]
    try:
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        records = copy / "autograded"
        deadline = time.time() + 240
        while not list(records.glob(f"*/{A}/.grader.json")) and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        first.kill()
        first.wait()
        done_before = len(list(records.glob(f"*/{A}/.grader.json")))
        assert done_before >= 1
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
        assert second.returncode == 0, second.stdout + second.stderr
        if done_before < 3:
            assert f"{done_before} submission(s) already graded and unchanged" in second.stdout
    finally:
        for process in [*workers, scheduler]:
            process.terminate()
        for process in [*workers, scheduler]:
            process.wait(timeout=30)
    assert scores(copy) == {s: g for s, g in scores(course).items() if s in ("correct", "wrong", "crash")}


def test_collect_folder_reports_problems(tmp_path, capsys):
    course = toycourse.make_course(tmp_path / "course")
    inbox = tmp_path / "inbox"
    toycourse.submit(tmp_path / "course", "x")  # a student version to copy around
    student_version = (course / "submitted" / "x" / A / "toy.ipynb").read_bytes()
    shutil.rmtree(course / "submitted")
    for path, data in {"ada/toy/toy.ipynb": student_version, "bob/toy/Copy of toy.ipynb": student_version,
                       "Ada/toy/toy.ipynb": student_version, "cy/other/other.ipynb": student_version}.items():
        (inbox / path).parent.mkdir(parents=True, exist_ok=True)
        (inbox / path).write_bytes(data)
    (inbox / "dan" / "toy").mkdir(parents=True)
    problems = collect.collect(inbox, course)
    assert sorted(p.name for p in (course / "submitted").iterdir()) == ["bob"]  # Ada / ada: neither, with a report
    assert (course / "submitted" / "bob" / A / "toy.ipynb").exists()
    text = "\n".join(problems)
    assert "refused toy of 'Ada' and 'ada': the same student id" in text
    assert "misnamed notebook bob/toy/Copy of toy.ipynb: renamed" in text
    assert "empty folder" in text and "dan" in text and "no assignment 'other'" in text
    assert "NOTE" in capsys.readouterr().out


def test_collect_lms_zip_with_nbgrader_conventions(tmp_path):
    course = toycourse.make_course(tmp_path / "course")
    notebook = toycourse.submit(course, "x").read_bytes()
    shutil.rmtree(course / "submitted")
    inner = tmp_path / "eve_submission.zip"  # an LMS may nest one zip per student
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("eve_toy.ipynb", notebook)
    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ann_toy.ipynb", notebook)
        z.writestr("ben_toy (1).ipynb", notebook)
        z.writestr("README.txt", "downloaded from the LMS")
        z.write(inner, inner.name)
    problems = collect.collect(archive, course, assignment=A)
    assert sorted(p.name for p in (course / "submitted").iterdir()) == ["ann", "ben", "eve"]
    assert (course / "submitted" / "ben" / A / "toy.ipynb").read_bytes() == notebook
    assert any("README.txt" in p for p in problems) and any("renamed to toy.ipynb" in p for p in problems)
    with pytest.raises(GraderError, match="--assignment"):
        collect.collect(archive, course)


def test_collect_takes_identity_from_the_outer_structure_and_refuses_what_is_unsafe(tmp_path):
    """A file in one student's upload naming another, colliding ids, `..`, paths leaving the archive,
    links and special files: each is refused with a reason, costs only its own student, and the
    temporary folder is removed."""
    import tempfile

    course = toycourse.make_course(tmp_path / "course")
    notebook = toycourse.submit(course, "x").read_bytes()
    shutil.rmtree(course / "submitted")
    toycourse.submit(course, "victim")  # graded before: must stay as it is
    victim = (course / "submitted" / "victim" / A / "toy.ipynb").read_bytes()
    upload = tmp_path / "mallory_upload.zip"
    with zipfile.ZipFile(upload, "w") as z:
        z.writestr("victim_toy.ipynb", b"{}")  # names another student: refused
        z.writestr("mallory_toy.ipynb", notebook)
    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(upload, upload.name)
        z.writestr("../escape_toy.ipynb", notebook)  # leaves the archive
        z.writestr("Carol_toy.ipynb", notebook)
        z.writestr("carol_toy.ipynb", notebook)  # the same student id as Carol once case is ignored
        z.writestr("dave_toy.ipynb", notebook)
        z.writestr("broken_upload.zip", b"not a zip")
    before = set(Path(tempfile.gettempdir()).glob("grader-collect-*"))
    problems = "\n".join(collect.collect(archive, course, assignment=A))
    assert set(Path(tempfile.gettempdir()).glob("grader-collect-*")) == before, "the temporary folder is removed"
    assert sorted(p.name for p in (course / "submitted").iterdir()) == ["dave", "mallory", "victim"]
    assert (course / "submitted" / "victim" / A / "toy.ipynb").read_bytes() == victim
    assert (course / "submitted" / "mallory" / A / "toy.ipynb").read_bytes() == notebook
    assert "inside mallory's upload names another student (victim)" in problems
    assert "../escape_toy.ipynb: a path that leaves the archive" in problems
    assert "refused toy of 'Carol' and 'carol'" in problems
    assert "broken_upload.zip: not a readable zip" in problems

    # A shared folder: a link to the course's master notebook, a pipe, and a student id `..`-like.
    inbox = tmp_path / "inbox"
    (inbox / "erin" / A).mkdir(parents=True)
    (inbox / "erin" / A / "toy.ipynb").symlink_to(course / "source" / A / "toy.ipynb")
    (inbox / "fay" / A).mkdir(parents=True)
    (inbox / "fay" / A / "toy.ipynb").write_bytes(notebook)
    os.mkfifo(inbox / "fay" / A / "notes.txt")
    (inbox / "gus" / A).mkdir(parents=True)
    (inbox / "gus" / A / "toy.ipynb").write_bytes(notebook)
    (inbox / "gus " / A).mkdir(parents=True)  # "gus " and "gus": which is which? refused, both
    (inbox / "gus " / A / "toy.ipynb").write_bytes(notebook)
    problems = "\n".join(collect.collect(inbox, course))
    assert not (course / "submitted" / "erin").exists(), "a link is never followed"
    assert "erin/toy/toy.ipynb: a link" in problems
    assert (course / "submitted" / "fay" / A / "toy.ipynb").exists() and not (course / "submitted" / "fay" / A / "notes.txt").exists()
    assert "notes.txt: not a regular file" in problems
    assert not (course / "submitted" / "gus").exists() and "refused toy of 'gus' and 'gus '" in problems
    assert collect.bad_id("..") and collect.bad_id("a/b") and collect.bad_id(".hidden") and not collect.bad_id("José")
    assert collect.student_key("Jos\u00e9 ") == collect.student_key("JOSE\u0301")  # one person, two spellings


def test_links_in_submitted_are_refused_before_grading(tmp_path):
    """A link placed in submitted/ by hand is still never read: the grader's own file reader refuses it."""
    from grader.course import files_under

    folder = tmp_path / "submitted"
    folder.mkdir()
    (folder / "toy.ipynb").write_text("{}")
    (folder / "master.ipynb").symlink_to(tmp_path / "elsewhere.ipynb")
    (tmp_path / "elsewhere.ipynb").write_text("the hidden tests")
    (folder / "linked-dir").symlink_to(tmp_path)
    with open(folder / "sparse.bin", "wb") as handle:  # a 1 GiB sparse file: no disk used, still refused
        handle.truncate(2**30)
    refused = []
    assert list(files_under(folder, refused)) == ["toy.ipynb"]
    assert sorted(r.split(":")[0] for r in refused) == ["linked-dir", "master.ipynb", "sparse.bin"]
