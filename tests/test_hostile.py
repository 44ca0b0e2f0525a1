"""Hostile submissions: the grader must grade each of them fairly and nobody else any differently.

One class of the tiny course in tests/hostile/ (assignment "01-softmax": an accuracy check on a
softmax regression, `add` with a hidden test, a written answer) is graded once, in parallel, by
grader.autograde.autograde_many on a two-worker Dask cluster with small limits (wall time 120 s,
memory 1500 MiB, 15 s per cell). The class: two honest students (alice, bob), a "victim" graded
before the others, and one student per attack in tests/hostile/submissions.py. Then each test checks one case:

  - the batch completed: every student has a record;
  - the attacker's score, and a reason in words (the record's reason, cell_errors, cell_notes,
    checks or flags, or the gradebook's comments);
  - nobody else's grade changed: alice and bob get every automatic point, the victim's files and
    scores are byte for byte what they were;
  - nothing hidden (hidden tests, the model answer) reaches a feedback page or any text the
    student is shown;
  - the gradebook stays consistent (one submission per student, every score within [0, max]).

Where a case is not about the accuracy check, its training cell is left unanswered (the check
scores 0 at once), so the class grades in minutes; the `add` exercise then carries its one point.

The module takes 3-5 minutes on two busy cores (the batch ~3-4.5 min, feedback ~15 s). A failing
test's message says which defence is missing (each attack prints what it managed in its notebook).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent / "hostile"))
sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "grader"))
import submissions  # noqa: E402
import gradebooks  # noqa: E402
import tinycourse  # noqa: E402
from hosts import host_address  # noqa: E402
from tinycourse import ASSIGNMENT as A, AUTO_MAX, HIDDEN_MARKERS, MAX_SCORE  # noqa: E402

from grader.cluster import start_client  # noqa: E402
from grader import autograde  # noqa: E402

pytestmark = pytest.mark.timeout(900)
VICTIM = "victim"
STUDENTS = sorted(submissions.CASES)
LIMITS = dict(timeout=120, memory="1500M", cell_timeout=15, progress=False)
CHECK = "test-mnist-accuracy"  # the grade cell of the accuracy check "mnist-linear"




def gradebook_scores(course):
    return gradebooks.scores(course, A)


def folder_bytes(folder):
    """{relative path: bytes} of every file under `folder`, hidden ones included."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(tag):
    """Processes named by the fork-bomb submission that are still alive."""
    found = []
    for process in psutil.process_iter(["name"]):
        if (process.info["name"] or "").startswith(tag):
            found.append(process)
    return found


@pytest.fixture(scope="module")
def environment():
    """What the notebooks read, set before the Dask workers start (their sandboxes inherit it)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MNISTLAB_DATA_SOURCE", "offline")
        env.setenv("MNISTLAB_QUIET", "1")
        env.setenv("MPLBACKEND", "Agg")
        yield


@pytest.fixture(scope="module")
def client(environment):
    c, cluster = start_client(workers=2)  # the grader's own local cluster
    with c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def graded(tmp_path_factory, client):
    """The class, graded once: the victim first, then everyone else in one batch."""
    root = tmp_path_factory.mktemp("hostile")
    course = tinycourse.make_course(root / "course")
    server = socket.create_server(("0.0.0.0", 0))  # what the network case must not reach
    server.setblocking(False)
    sleeper = subprocess.Popen(["sleep", "900"])  # a bystander process the killer case must not reach
    tag = f"hx{os.getpid() % 1000}"
    unix_socket = Path("/run" if os.access("/run", os.W_OK) else root, f"{tag}.sock")  # a host service's socket
    unix_server = socket.socket(socket.AF_UNIX)
    unix_server.bind(str(unix_socket))
    unix_server.listen()
    unix_server.setblocking(False)
    ctx = SimpleNamespace(course=course, victim=VICTIM, host=host_address(), port=server.getsockname()[1],
                          marker=root / "unpickled-by-the-grader", tag=tag, sleeper=sleeper.pid, unix_socket=unix_socket)
    try:
        tinycourse.submit(course, VICTIM, tinycourse.answered(tinycourse.student_version(course)))
        first = autograde.autograde_many([A], course, client=client, students=[VICTIM], **LIMITS)
        victim = {"scores": gradebook_scores(course)[VICTIM], "record": first[A, VICTIM],
                  "submitted": folder_bytes(course / "submitted" / VICTIM),
                  "autograded": folder_bytes(course / "autograded" / VICTIM)}

        for student, build in submissions.CASES.items():
            tinycourse.submit(course, student, build(tinycourse.student_version(course), ctx))
        results = autograde.autograde_many([A], course, client=client, **LIMITS)

        try:
            server.accept()[0].close()
            reached = True
        except BlockingIOError:
            reached = False
        try:
            unix_server.accept()[0].close()
            unix_reached = True
        except BlockingIOError:
            unix_reached = False
        bystander_alive = sleeper.poll() is None
        alive = leftovers(ctx.tag)
        alive_names = sorted(p.info["name"] for p in alive)
    finally:
        server.close()
        unix_server.close()
        unix_socket.unlink(missing_ok=True)
        sleeper.kill()
        sleeper.wait()
        for process in leftovers(ctx.tag):  # started by our own submission: end them by pid, whatever the verdict
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
    return SimpleNamespace(course=course, ctx=ctx, results={s: r for (_, s), r in results.items()},
                           victim=victim, server_reached=reached, unix_reached=unix_reached, leftovers=alive_names,
                           bystander_alive=bystander_alive)


@pytest.fixture(scope="module")
def feedback(graded):
    """Every student's feedback pages (grader.feedback), and the error it raised, if any (a page it
    refused to write, e.g. LeakError, is missing then)."""
    try:
        from grader.feedback import feedback as make
    except ImportError as error:
        pytest.fail(f"grader/feedback.py is missing or broken ({error}): no feedback pages to check")
    error = None
    try:
        make(A, str(graded.course), None, None)
    except Exception as raised:  # noqa: BLE001 (reported by the tests that read the pages)
        error = f"{type(raised).__name__}: {raised}"
    pages = {}
    for path in sorted((graded.course / "feedback").glob(f"*/{A}/*.html")):
        pages.setdefault(path.parts[-3], []).append(path.read_text(errors="replace"))
    return SimpleNamespace(pages=pages, error=error)


# --- helpers that read what the grader wrote -------------------------------------------------------

def record(graded, student):
    found = autograde.read_record(autograde.course_directory(graded.course)[0], A, student)
    assert found is not None, f"no .grader.json for {student}: the batch did not finish it"
    return found


def scores(graded, student):
    return gradebook_scores(graded.course)[student]


def comments(graded, student):
    from nbgrader.api import Gradebook

    cd, _ = autograde.course_directory(graded.course)
    with Gradebook(cd.db_url, cd.course_id) as gb:
        submission = gb.find_submission(A, student)
        return [c.comment or "" for nb in submission.notebooks for c in nb.comments]


def check(graded, student, name="mnist-linear"):
    """The record's entry for the accuracy check `name`."""
    entries = [c for c in record(graded, student).checks or [] if c.name == name]
    assert entries, f"{student}: no clean re-scoring of {name!r} in .grader.json checks: {record(graded, student).checks}"
    return entries[0]


def explanations(graded, student):
    """Every sentence the grader gave about this submission, lower case, in one string."""
    r = record(graded, student)
    parts = [r.reason or "", json.dumps(r.cell_errors or {}), json.dumps(r.cell_notes or {}),
             json.dumps(r.flags or []), *[str(c.reason or "") for c in r.checks or []],
             *comments(graded, student)]
    return "\n".join(parts).lower()


def outputs(graded, student):
    """Text of every output of the student's autograded notebook(s)."""
    texts = []
    for path in (graded.course / "autograded" / student / A).glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            for output in cell.get("outputs", []):
                texts.append(json.dumps(output))
    return "\n".join(texts)


def hidden_in(text):
    return [marker for marker in HIDDEN_MARKERS if marker in text]


# --- the whole class -------------------------------------------------------------------------------

def test_every_student_has_a_record(graded):
    """The batch survives every attack: each student is graded or failed with a reason, none is lost."""
    assert sorted(graded.results) == sorted(STUDENTS + [VICTIM])  # the victim's record is read back
    for student in STUDENTS + [VICTIM]:
        r = record(graded, student)
        assert r.status in ("graded", "failed")
        assert r.status == "graded" or r.reason, f"{student} failed without a reason"


def test_honest_students_keep_every_point(graded):
    """Attacks in the same batch (crashes, floods, forks, writes) cost the honest students nothing,
    and the clean re-scoring agrees with their notebooks."""
    for student in ("alice", "bob"):
        r = record(graded, student)
        assert r.status == "graded", r
        assert r.score == AUTO_MAX and r.max_score == MAX_SCORE and r.manual_pending == 1.0
        assert scores(graded, student)[CHECK] == 1.0 and scores(graded, student)["test-add"] == 1.0
        assert not r.flags, f"{student} flagged: {r.flags}"
        entry = check(graded, student)
        assert entry.passed and entry.clean >= entry.threshold == 0.885
        assert abs(entry.claimed - entry.clean) < 0.01  # the same model, the same test images


def test_victim_graded_before_is_untouched(graded):
    """A student graded earlier keeps their scores, record and files byte for byte."""
    course, before = graded.course, graded.victim
    assert before["record"].score == AUTO_MAX
    assert scores(graded, VICTIM) == before["scores"]
    assert folder_bytes(course / "submitted" / VICTIM) == before["submitted"]
    assert folder_bytes(course / "autograded" / VICTIM) == before["autograded"]
    assert record(graded, VICTIM) == before["record"]


def test_gradebook_stays_consistent(graded):
    """nbgrader's Gradebook opens; one submission per student; every score within [0, max]."""
    from nbgrader.api import Gradebook

    cd, _ = autograde.course_directory(graded.course)
    with Gradebook(cd.db_url, cd.course_id) as gb:
        submissions_ = gb.find_assignment(A).submissions
        names = [s.student.id for s in submissions_]
        assert sorted(names) == sorted(STUDENTS + [VICTIM])
        for submission in submissions_:
            assert submission.max_score == MAX_SCORE, submission.student.id
            assert 0 <= submission.score <= submission.max_score, submission.student.id
            for nb in submission.notebooks:
                for grade in nb.grades:
                    assert grade.max_score == 1.0, (submission.student.id, grade.name, grade.max_score)
                    for value in (grade.auto_score, grade.manual_score):
                        assert value is None or 0 <= value <= grade.max_score, (submission.student.id, grade.name, value)


def test_no_hidden_text_in_what_students_are_told(graded):
    """Reasons, notes, check findings and gradebook comments never quote hidden tests or the model answer."""
    for student in STUDENTS:
        assert not hidden_in(explanations(graded, student)), student


def test_no_hidden_text_in_any_feedback_page(graded, feedback):
    """Every student gets feedback pages, free of hidden tests and the model answer whatever their
    code printed (see the history, stack-peek and reader cases)."""
    pages = feedback.pages
    leaks = {s: hidden_in(text) for s, texts in pages.items() for text in texts if hidden_in(text)}
    assert not leaks, f"hidden text in feedback: {leaks}"
    assert feedback.error is None, feedback.error
    assert set(STUDENTS) <= set(pages), f"no feedback for {sorted(set(STUDENTS) - set(pages))}"
    for student in ("alice", "bob"):
        assert any("add(1, 2)" in text for text in pages[student]), "the visible test is shown"


# --- one test per attack ---------------------------------------------------------------------------

def test_loop_in_graded_cell(graded):
    """An endless loop in code a grade cell calls: that cell times out and scores 0, the rest is graded."""
    r = record(graded, "loop-graded")
    assert r.status == "graded" and r.cell_errors.get("test-add") == "CellTimeoutError"
    assert scores(graded, "loop-graded") == {CHECK: 0.0, "test-add": 0.0, "q-written": 0.0}  # no model trained
    assert "ex-add" not in r.cell_errors  # the cells before it ran normally
    assert "twice" in r.cell_notes["test-add"], "a 0 for time only after a second grading, alone"


def test_loop_in_solution_cell(graded):
    """An endless loop in the training cell: it times out, the check that needs its model scores 0."""
    r = record(graded, "loop-solution")
    assert r.status == "graded" and r.cell_errors.get("train-model") == "CellTimeoutError"
    assert scores(graded, "loop-solution")[CHECK] == 0.0 and r.score == 1.0
    assert "twice" in r.cell_notes["train-model"]


def test_kernel_settings_and_shared_memory_are_out_of_reach(graded):
    """/proc/sys is read-only for the kernel and /sys absent; its /dev/shm is its own and gone with it; the
    host's sockets in /run are out of reach (in any other folder too: tests/test_jail.py)."""
    assert scores(graded, "kernel-settings")["test-add"] == 1.0, outputs(graded, "kernel-settings")[-1500:]
    assert not list(Path("/dev/shm").glob(f"{graded.ctx.tag}-shm-marker")), "a file written to /dev/shm reached the host"
    assert not graded.unix_reached, "the kernel connected to a UNIX socket of the host"


def test_cpu_hog_next_to_honest_students(graded):
    """A submission that keeps three processes spinning (graded beside alice) is graded; the honest
    students keep every point (test_honest_students_keep_every_point), because a time limit hit on a
    busy machine is graded again alone, and the limit counts CPU time."""
    r = record(graded, "a-cpu-hog")
    assert r.status == "graded", r
    assert "spinning" in outputs(graded, "a-cpu-hog")


def test_memory_bomb(graded):
    """Memory beyond the limit: the submission is killed, scores 0, and the record says why."""
    r = record(graded, "memory-bomb")
    assert r.status == "failed" and "memory limit" in r.reason and r.score == 0.0
    assert all("memory limit" in c for c in comments(graded, "memory-bomb") if c)


def test_kernel_death(graded):
    """os._exit(1) kills the kernel: 0 points, the reason says the kernel died."""
    r = record(graded, "os-exit")
    assert r.status == "failed" and "kernel died" in r.reason and r.score == 0.0


def test_sys_exit(graded):
    """sys.exit() does not end the grading: the grade cell after it still runs and scores."""
    r = record(graded, "sys-exit")
    assert r.status == "graded" and r.score == 1.0
    assert scores(graded, "sys-exit")["test-add"] == 1.0 and r.cell_errors.get("ex-add") == "SystemExit"


def test_deleted_grade_cell(graded):
    """A deleted grade cell is not a free point: it scores 0 and the note says it was deleted."""
    r = record(graded, "deleted-cell")
    assert r.status == "graded" and r.score == 0.0 and r.max_score == MAX_SCORE
    assert scores(graded, "deleted-cell")["test-add"] == 0.0
    assert "deleted" in (r.cell_notes or {}).get("test-add", "").lower(), r.cell_notes


def test_retyped_grade_cell(graded):
    """A grade cell turned into markdown is restored and run (a wrong `add` scores 0), with a note."""
    r = record(graded, "retyped-cell")
    assert r.status == "graded" and r.score == 0.0
    assert scores(graded, "retyped-cell")["test-add"] == 0.0
    note = (r.cell_notes or {}).get("test-add", "").lower()
    assert "markdown" in note or "type" in note, r.cell_notes


def test_duplicated_grade_cell(graded):
    """A copy of a grade cell claiming 100 points changes nothing: max stays 3, the real test runs."""
    r = record(graded, "duplicated-cell")
    assert r.status == "graded" and r.score == 0.0 and r.max_score == MAX_SCORE
    assert scores(graded, "duplicated-cell")["test-add"] == 0.0
    assert "duplicat" in (r.cell_notes or {}).get("test-add", "").lower(), r.cell_notes


def test_duplicate_cell_ids(graded):
    """Cells sharing one nbformat id (an invalid notebook) are still graded like any other."""
    r = record(graded, "duplicate-ids")
    assert r.status == "graded" and r.score == 1.0 and scores(graded, "duplicate-ids")["test-add"] == 1.0, r


def test_invalid_json(graded):
    """A notebook that is not JSON scores 0, and the reason says the notebook could not be read."""
    r = record(graded, "invalid-json")
    assert r.score == 0.0 and r.reason
    assert re.search(r"json|not a notebook|cannot read|could not read|unreadable", r.reason, re.I), r.reason


def test_wrong_notebook_name(graded):
    """A notebook under another name scores 0 with a reason naming the notebook that was expected."""
    r = record(graded, "wrong-name")
    assert r.score == 0.0 and r.reason and tinycourse.NOTEBOOK in r.reason, r.reason


def test_empty_folder(graded):
    """An empty submission folder scores 0 with a reason."""
    r = record(graded, "empty-folder")
    assert r.score == 0.0 and r.reason, r


def test_monkeypatched_check(graded):
    """train.evaluate and thresholds.threshold redefined in the kernel: the notebook claims 99%, the
    clean re-scoring measures the untrained model, the check scores 0 and the submission is flagged."""
    r = record(graded, "monkeypatch")
    entry = check(graded, "monkeypatch")
    assert entry.claimed == pytest.approx(0.99) and entry.clean < 0.5 and not entry.passed
    assert scores(graded, "monkeypatch")[CHECK] == 0.0 and r.score == 1.0
    assert r.flags and CHECK in (r.cell_notes or {}), r


def test_printed_fake_accuracy(graded):
    """A printed "test accuracy 99%" is worth nothing: the check measures the model, 0 points, with a reason."""
    entry = check(graded, "fake-print")
    assert not entry.passed and entry.clean < 0.5 and entry.reason
    assert scores(graded, "fake-print")[CHECK] == 0.0 and record(graded, "fake-print").score == 1.0


def test_check_replaced_hands_nothing_in(graded):
    """course.check_accuracy replaced by a print: no model is handed in, so the check scores 0, with a reason."""
    r = record(graded, "no-handin")
    entry = check(graded, "no-handin")
    assert not entry.passed and entry.clean is None and entry.reason
    assert scores(graded, "no-handin")[CHECK] == 0.0 and r.score == 1.0 and r.flags


def test_trained_on_the_test_set(graded):
    """A model fit to the test images: high on them, lower on the training images. Flagged, 0 points, reason."""
    r = record(graded, "test-set")
    entry = check(graded, "test-set")
    assert entry.clean >= entry.threshold and entry.pool is not None and entry.pool < entry.clean
    assert not entry.passed and "test" in (entry.reason or "").lower()
    assert scores(graded, "test-set")[CHECK] == 0.0 and r.score == 1.0 and r.flags


def test_unexportable_model(graded):
    """A forward pass with .numpy() and an `if` on the data cannot be handed in: the check scores 0
    and the student is told why (export) and what to change."""
    r = record(graded, "unexportable")
    assert r.status == "graded" and r.score == 1.0
    assert scores(graded, "unexportable")[CHECK] == 0.0
    assert r.cell_errors.get(CHECK) == "CannotExport", r.cell_errors
    assert "torch.where" in outputs(graded, "unexportable")  # the error says what to do instead


def test_fake_artifact(graded):
    """Hand-in files replaced after the check (a graph calling builtins.exec, pickled weights, a 99%
    claim): refused without running or unpickling anything; 0 points, flagged, with a reason."""
    r = record(graded, "fake-artifact")
    assert not graded.ctx.marker.exists(), "the grader unpickled the student's weights file"
    assert scores(graded, "fake-artifact")[CHECK] == 0.0 and r.score == 1.0
    entry = check(graded, "fake-artifact")
    assert not entry.passed and r.flags
    assert re.search(r"refus|unsafe|not a plain|cannot", entry.reason or "", re.I), entry


def test_writes_to_gradebook_and_other_students(graded):
    """Writing the course's gradebook, another student's submission, record or folder is refused;
    the writer's own honest answers still score."""
    r = record(graded, "writer")
    text = outputs(graded, "writer")
    assert "'DONE'" not in text, text[-2000:]
    assert text.count("refused (") >= 5
    assert r.status == "graded" and r.score == 1.0
    assert not (graded.course / "autograded" / VICTIM / A / "hacked.txt").exists()
    assert b"hacked" not in (graded.course / "gradebook.db").read_bytes()


def test_trigger_in_grading_gradebook(graded):
    """An SQLite trigger planted in the grading copy of the gradebook (it would turn nbgrader's scores
    into full marks) gains nothing: the wrong answers score 0."""
    r = record(graded, "trigger")
    assert scores(graded, "trigger")[CHECK] == 0.0 and scores(graded, "trigger")["test-add"] == 0.0
    assert r.score == 0.0, r


def test_reading_hidden_tests_is_refused(graded):
    """The kernel cannot read the hidden tests: not in the course's source/, nor in the grading copy
    (source/ and gradebook.db); its printout holds none of them."""
    text = outputs(graded, "reader")
    assert not hidden_in(text), hidden_in(text)
    assert "'DONE'" not in text and text.count("refused (") >= 4, text[-2000:]
    assert record(graded, "reader").score == 1.0


def test_input_history_does_not_leak(graded, feedback):
    """IPython's `In` holds the grade cells as they ran, hidden tests included: printing it must not
    put them in the student's feedback."""
    assert record(graded, "history").score == 1.0
    assert feedback.pages.get("history"), f"no feedback page for history ({feedback.error})"
    assert not any(hidden_in(text) for text in feedback.pages["history"])


def test_stack_peek_does_not_leak(graded, feedback):
    """`add` printing its caller's source line (the hidden assert) must not show it in the feedback."""
    assert record(graded, "stack-peek").score == 1.0
    assert feedback.pages.get("stack-peek"), f"no feedback page for stack-peek ({feedback.error})"
    assert not any(hidden_in(text) for text in feedback.pages["stack-peek"])


def test_output_flood(graded, feedback):
    """100 MiB on stdout and stderr: graded (the flood was in a solution cell), and what is kept of
    it, in autograded/ and on the feedback page, is small."""
    r = record(graded, "flood")
    assert r.status == "graded" and r.score == 1.0, r
    size = sum(p.stat().st_size for p in (graded.course / "autograded" / "flood").rglob("*") if p.is_file())
    assert size < 5 * 2**20, f"the autograded flood takes {size / 2**20:.0f} MiB"
    pages = feedback.pages.get("flood") or []
    assert pages and max(len(text) for text in pages) < 5 * 2**20, [len(text) for text in pages]


def test_network_is_unreachable(graded):
    """Neither the internet nor this machine's address can be reached from the kernel."""
    r = record(graded, "network")
    assert r.sandbox["network"].startswith("isolated")
    assert not graded.server_reached, "the submission connected to a server on this machine"
    assert r.score == 1.0  # `add` is right only when both connections were refused


def test_fork_bomb_leaves_nothing_behind(graded):
    """A daemon that left the kernel's process tree and forked children are all gone after grading;
    the submission is graded, or stopped by a limit that says so."""
    assert not graded.leftovers, f"still running after the batch: {graded.leftovers}"
    r = record(graded, "fork-bomb")
    assert (r.status == "graded" and r.score == 1.0) or "limit" in (r.reason or ""), r


def test_shared_files_are_not_writable(graded):
    """The mnistlab package, PyTorch, the cached data and the folders around the course cannot be
    written from the kernel: one student cannot change what the others (or the grader) run."""
    text = outputs(graded, "poison")
    assert "'DONE'" not in text and text.count("refused (") >= 4, text[-3000:]
    assert record(graded, "poison").score == 1.0


def test_processes_outside_cannot_be_killed(graded):
    """A process outside the sandbox survives the kernel's SIGKILL."""
    assert graded.bystander_alive, "the killer case killed a process outside its sandbox"
    assert "'DONE'" not in outputs(graded, "killer")
    assert record(graded, "killer").score == 1.0
