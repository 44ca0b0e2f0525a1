"""The jail's promises (grader/jail.py), checked from inside a student's kernel graded by the real pipeline.

Two students of the tiny hostile course (tests/hostile/tinycourse.py) are graded in one batch by
grader.autograde.autograde_many on a two-worker Dask cluster:

  - "prober" (an honest `add`) then tries, from a cell of its own: its uid; reading a file of another
    checkout (in a temporary folder outside /tmp, where no cover of the old jail reached), /etc/shadow,
    this repository's .git, tests/fixtures and source/ masters, and the course's source/ master;
    writing /dev/shm; connecting to a UNIX socket of the host in that temporary folder (not /run);
    starting 2,000 threads. It prints what happened as one line "JAIL-PROBE {json}".
  - "honest" (tinycourse's answers) also measures its kernel's processes and threads, at rest and
    while a DataLoader with 4 workers feeds a model on 4 PyTorch threads ("TASKS {json}").

The course's hide list is emptied for this batch (autograde.hidden_paths): what the kernel cannot
see, it cannot see because the allowlist root does not hold it, not because something covers it.

Two tests start the jail directly: as a grader that is not root would (in a user namespace that maps only
its own uid), checking that the kernel is jailed there too, under that uid; and with a kernel that never exits,
ended as jupyter_client ends a kernel hung after its shutdown request (SIGTERM), checking that the kept folders
are handed back all the same.

The module takes ~30 s on two cores (the batch ~20 s).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent / "hostile"))
import tinycourse  # noqa: E402
from tinycourse import ASSIGNMENT as A, AUTO_MAX  # noqa: E402

from grader import autograde, jail  # noqa: E402

pytestmark = pytest.mark.timeout(900)
REPO = Path(__file__).resolve().parent.parent
LIMITS = dict(timeout=120, memory="1500M", cell_timeout=30, progress=False)

PROBE = """import json, os, socket, threading
probe = {"uid": os.getuid()}
def attempt(what, action):
    try:
        action()
        probe[what] = "DONE"
    except BaseException as error:
        probe[what] = f"refused ({type(error).__name__}: {str(error)[:80]})"
for what, path in PATHS.items():
    attempt(what, lambda: open(path, "rb").read(1))
attempt("write /dev/shm", lambda: open(SHM, "w").write("left for the host"))
attempt("connect to the host's socket", lambda: socket.socket(socket.AF_UNIX).connect(SOCKET))
release, started = threading.Event(), 0
try:
    for _ in range(2000):
        threading.Thread(target=release.wait, daemon=True).start()
        started += 1
except RuntimeError as error:
    probe["threads refused"] = str(error)
release.set()
probe["threads"] = started
print("JAIL-PROBE " + json.dumps(probe))
"""

TASKS = """import json, os, torch
from torch.utils.data import DataLoader, TensorDataset
def tasks():  # processes and threads of this kernel: its PID namespace shows only its own
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            count += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            pass
    return count
at_rest = peak = tasks()
torch.set_num_threads(4)
weights = torch.randn(784, 10)
for images, labels in DataLoader(TensorDataset(torch.randn(4000, 784), torch.randint(0, 10, (4000,))), batch_size=100, num_workers=4):
    (images @ weights).softmax(1).sum()
    peak = max(peak, tasks())
torch.set_num_threads(1)
print("TASKS " + json.dumps({"at_rest": at_rest, "peak": peak}))
"""


def outside_tmp():
    """A fresh temporary folder outside /tmp (the old jail covered /tmp whole): /var/tmp, else the home folder."""
    for parent in ("/var/tmp", str(Path.home())):
        if os.access(parent, os.W_OK):
            return Path(tempfile.mkdtemp(prefix="other-checkout-", dir=parent))
    pytest.skip("no writable folder outside /tmp")


def printed(course, student, prefix):
    """The JSON the student's kernel printed after `prefix`, from its autograded notebook."""
    for path in (course / "autograded" / student / A).glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            for output in cell.get("outputs", []):
                for line in output.get("text", "").splitlines():
                    if line.startswith(prefix):
                        return json.loads(line[len(prefix):])
    pytest.fail(f"{student}'s kernel printed no {prefix.strip()} line")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("jail")
    other, tag = outside_tmp(), f"jx{os.getpid() % 1000}"
    (other / "secret.txt").write_text("another checkout's file")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(other / "service.sock"))
        server.listen()
        server.setblocking(False)
        return grade(root, other, server, tag)
    finally:
        server.close()
        Path("/dev/shm", f"{tag}-marker").unlink(missing_ok=True)
        for path in other.iterdir():
            path.unlink()
        other.rmdir()


def grade(root, other, server, tag):
    """Grade the class (module docstring); the host's side of each probe: was the socket reached, is the
    marker in the host's /dev/shm."""
    course = tinycourse.make_course(root / "course")
    paths = {"another checkout": other / "secret.txt", "/etc/shadow": Path("/etc/shadow"),
             "the repository's .git": REPO / ".git" / "HEAD", "the repository's tests/fixtures": REPO / "tests" / "fixtures" / "grader" / "hosts.py",
             "the repository's source/ master": REPO / "source" / A / f"{A}.ipynb",
             "the course's source/ master": course / "source" / A / tinycourse.NOTEBOOK}
    paths = {what: str(path) for what, path in paths.items() if path.exists()}
    setup = f"PATHS = {paths!r}\nSHM = {f'/dev/shm/{tag}-marker'!r}\nSOCKET = {str(other / 'service.sock')!r}\n"
    prober = tinycourse.answered(tinycourse.student_version(course), train=None)
    prober.cells.insert(tinycourse.find(prober, "ex-add") + 1, nbformat.v4.new_code_cell(setup + PROBE))
    honest = tinycourse.answered(tinycourse.student_version(course))
    honest.cells.insert(tinycourse.find(honest, "ex-add") + 1, nbformat.v4.new_code_cell(TASKS))
    tinycourse.submit(course, "prober", prober)
    tinycourse.submit(course, "honest", honest)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("MNISTLAB_DATA_SOURCE", "offline"), ("MNISTLAB_QUIET", "1"), ("MPLBACKEND", "Agg")):
            patch.setenv(name, value)
        patch.setattr(autograde, "hidden_paths", lambda cd: [])  # only the allowlist hides anything
        results = autograde.autograde_many([A], course, workers=2, **LIMITS)
    try:
        server.accept()[0].close()
        reached = True
    except BlockingIOError:
        reached = False
    shm_on_host = Path("/dev/shm", f"{tag}-marker").exists()
    return SimpleNamespace(course=course, results={s: r for (_, s), r in results.items()}, paths=paths,
                           reached=reached, shm_on_host=shm_on_host)


@pytest.fixture(scope="module")
def probe(graded):
    return printed(graded.course, "prober", "JAIL-PROBE ")


def test_the_kernel_is_jailed_and_the_record_says_how(graded):
    for student in ("prober", "honest"):
        report = graded.results[student].sandbox
        assert report["kernel"].startswith("jailed"), report
        assert report["user"].startswith("uid ") and "no capabilities" in report["user"], report
        assert str(jail.MAX_TASKS) in report["tasks"], report


def test_the_kernel_does_not_run_as_root(probe):
    assert probe["uid"] != 0 and probe["uid"] >= jail.KERNEL_UIDS, probe


@pytest.mark.parametrize("what", ["another checkout", "/etc/shadow", "the repository's .git", "the repository's tests/fixtures",
                                  "the repository's source/ master", "the course's source/ master"])
def test_files_outside_the_allowlist_cannot_be_opened(graded, probe, what):
    if what not in graded.paths:
        pytest.skip(f"{what}: not on this machine")
    assert probe[what].startswith("refused"), f"the kernel opened {what} ({graded.paths[what]})"


def test_dev_shm_is_not_the_hosts(graded, probe):
    assert not graded.shm_on_host, "a file the kernel wrote to /dev/shm reached the host's /dev/shm"


def test_a_unix_socket_of_the_host_is_unreachable(graded, probe):
    assert not graded.reached and probe["connect to the host's socket"].startswith("refused"), probe


def test_two_thousand_threads_cannot_be_started(probe):
    assert probe["threads"] < jail.MAX_TASKS and "threads refused" in probe, probe


def test_an_honest_submission_keeps_every_point_and_stays_far_below_the_thread_limit(graded):
    r = graded.results["honest"]
    assert r.status == "graded" and r.score == AUTO_MAX and not r.flags, r
    tasks = printed(graded.course, "honest", "TASKS ")
    print(f"an honest kernel's processes and threads: {tasks} (limit {jail.MAX_TASKS})")
    assert tasks["peak"] <= jail.MAX_TASKS // 4, tasks


NOT_ROOT = """
import os, sys, tempfile
from pathlib import Path
from grader import jail, linux, sandbox

scratch = tempfile.mkdtemp(prefix="jail-not-root-")
for name in ("autograded/s/a", "home/runtime", "hand-in", "grader", "source"):
    os.makedirs(os.path.join(scratch, name))
Path(scratch, "home/runtime/kernel.json").write_text("{}")
# A grader that is not root: uid 1000, in a user namespace (as linux.new_namespaces makes for it).
linux.libc_call("unshare", linux.CLONE_NEWUSER)
Path("/proc/self/setgroups").write_text("deny")
Path("/proc/self/uid_map").write_text("1000 0 1")
Path("/proc/self/gid_map").write_text("1000 0 1")
print(sandbox.isolate(scratch, keep_capabilities=True), file=sys.stderr)
os.environ["HOME"] = os.path.join(scratch, "home")
sandbox.kernel_spec({"scratch": scratch})
os.chdir(os.path.join(scratch, "autograded/s/a"))
probe = "import json, os; print(json.dumps([os.getuid(), os.listdir('/'), os.path.exists('/etc/shadow'), os.listdir('/proc')]))"
os.execv = lambda exe, args: os.execve(exe, [exe, "-c", f"import sys; sys.stdout = open({scratch + '/hand-in/out'!r}, 'w'); {probe}"], os.environ)
jail.main([os.path.join(scratch, "grader", "jail.json"), "-f", os.path.join(scratch, "home/runtime/kernel.json")])
"""


@pytest.mark.skipif(os.getuid() != 0, reason="simulates a grader that is not root from root")
def test_a_grader_that_is_not_root_jails_the_kernel_under_its_own_uid(tmp_path):
    """The same jail in a user namespace; the kernel keeps the grader's uid (there is no other to change to)."""
    run = subprocess.run([sys.executable, "-c", NOT_ROOT], capture_output=True, text=True, timeout=120, cwd=REPO,
                         env=dict(os.environ, TMPDIR=str(tmp_path)))
    report = json.loads(run.stderr.split("GRADER-JAIL ", 1)[1].splitlines()[0]) if "GRADER-JAIL " in run.stderr else run.stderr
    assert report["kernel"].startswith("jailed"), report
    assert report["user"].startswith("the grader's own uid 1000"), report
    uid, top, shadow, processes = json.loads(next(tmp_path.glob("jail-not-root-*/hand-in/out")).read_text())
    assert uid == 1000 and not shadow and [p for p in processes if p.isdigit()] == ["1"], (uid, shadow, processes)
    assert not {"home", "run", "var", "opt", "mnt", "srv", "boot"} & set(top), top


def test_the_clean_scorer_does_not_use_the_kernels_home(tmp_path, monkeypatch):
    """The student's kernel writes its home/ (scratch/home): a cache folder it made there, unreadable to others,
    failed the clean scorer of that submission (PermissionError, every decided cell 0). The clean scorer has a
    home of its own, which the kernel never sees (scratch/grader)."""
    from grader import sandbox
    from grader.execute import new_scratch, remove

    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests" / "fixtures" / "grader"))  # for the entry point below
    scratch = new_scratch("home-probe")
    try:
        Path(scratch, "grader").mkdir()
        left = Path(scratch, "home", "torchinductor")  # as a kernel running as another uid leaves it
        left.mkdir(parents=True)
        os.chown(left, 54321, 54321)
        left.chmod(0o700)
        job = {"scratch": scratch, "kind": "score", "log": "clean.log", "entry": "home_probe:write_cache",
               "result": "probe.json", "isolate_network": True}
        helper = sandbox.Zygote(("home_probe",))  # its own zygote: it starts with the PYTHONPATH above
        try:
            exitcode, killed, _ = helper.run(job, 60, 2**30)
        finally:
            helper.process.kill()
            helper.process.wait()
        log = Path(scratch, "grader", "clean.log").read_text(errors="replace")
        assert (exitcode, killed) == (0, None), log
        found = json.loads(Path(scratch, "grader", "probe.json").read_text())
        assert Path(found["home"]).parent == Path(scratch, "grader") and Path(found["cache"], "entry").exists()
    finally:
        remove(scratch)


HANGS_ON_SHUTDOWN = """
import os, sys
from pathlib import Path
from grader import jail, sandbox

scratch = sys.argv[1]
for name in ("autograded/s/a", "home/runtime", "hand-in", "grader", "source"):
    os.makedirs(os.path.join(scratch, name))
Path(scratch, "home/runtime/kernel.json").write_text("{}")
print(sandbox.isolate(scratch, keep_capabilities=True), file=sys.stderr)
os.environ["HOME"] = os.path.join(scratch, "home")
sandbox.kernel_spec({"scratch": scratch})
os.chdir(os.path.join(scratch, "autograded/s/a"))
# A kernel that hands a file in, then never exits (as an ipykernel hung after its shutdown request).
kernel = f"import time; open({scratch + '/hand-in/model'!r}, 'w').write('weights'); time.sleep(600)"
os.execv = lambda exe, args: os.execve(exe, [exe, "-c", kernel], os.environ)
jail.main([os.path.join(scratch, "grader", "jail.json"), "-f", os.path.join(scratch, "home/runtime/kernel.json")])
"""


@pytest.mark.skipif(os.getuid() != 0, reason="the kernel gets a uid of its own only when the grader is root")
def test_a_kernel_ended_with_sigterm_is_killed_and_its_folders_handed_back(tmp_path):
    """jupyter_client ends a kernel that does not exit after its shutdown request with SIGTERM to the process it
    started: the jail's first process. It kills the kernel and hands the kept folders back to the grader (they
    were the kernel's uid's): a SIGTERM that killed it outright left them to a uid the clean scorer is not."""
    scratch = tmp_path / "scratch"
    jailed = subprocess.Popen([sys.executable, "-c", HANGS_ON_SHUTDOWN, str(scratch)], cwd=REPO,
                              stderr=subprocess.PIPE, text=True)
    handed_in = scratch / "hand-in" / "model"
    for _ in range(600):
        if handed_in.exists() or jailed.poll() is not None:
            break
        time.sleep(0.05)
    assert handed_in.exists(), jailed.communicate(timeout=30)[1]
    assert handed_in.stat().st_uid == jail.KERNEL_UIDS + jailed.pid  # the kernel's own uid
    start = time.monotonic()
    jailed.send_signal(signal.SIGTERM)
    jailed.wait(timeout=30)
    assert time.monotonic() - start < 5
    assert (handed_in.stat().st_uid, (scratch / "hand-in").stat().st_uid) == (0, 0)
    assert not [p for p in os.listdir("/proc") if p.isdigit() and str(handed_in) in open(f"/proc/{p}/cmdline").read()]
