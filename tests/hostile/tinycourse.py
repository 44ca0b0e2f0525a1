"""A tiny nbgrader course for the hostile-submission tests: one assignment, "01-softmax", with one notebook.

The assignment is named like the course's first one, so the course's real threshold table and the
grader's clean re-scoring table (grader/checks.py: hand-in "mnist-linear", grade cell
"test-mnist-accuracy", 88.5% on the offline stand-in) apply to it. The master (01-softmax.ipynb next
to this file) has four graded parts and runs in a few seconds:

  test-mnist-accuracy  1 point   course.check_accuracy on a softmax regression the student trains
  test-add             1 point   `add(a, b)`: a visible test, and a hidden one (HIDDEN_MARKERS)
  q-written            1 point   a written answer (markdown), graded by hand

`make_course(root)` writes the course and the student version (nbgrader generate_assignment, as
tests/fixtures/grader/toycourse.py does); `submit(root, student, notebook_or_files)` writes one
submission. The hostile variants are in submissions.py.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ASSIGNMENT = "01-softmax"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
MASTER = Path(__file__).parent / NOTEBOOK
AUTO_MAX = 2.0  # the automatic points: the accuracy check and `add`
MAX_SCORE = 3.0  # and the written answer

# Text only the master holds: a student (or their feedback) must never see any of it.
HIDDEN_MARKERS = ("hidden: forty-two", "add(40, 2)", "hidden: minus one", "BEGIN HIDDEN TESTS",
                  "Model answer: the digits are centred")

# The student version's training cell and `add`, as a student who did the work writes them.
TRAIN = ("train.seed_everything(0)\nmodel = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n"
         "train.fit(model, mnist_train, epochs=10, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), quiet=True)")
ADD = "def add(a, b):\n    return a + b"
ANSWER = "A linear score is a match with one template per class; MNIST digits are centred, so it works."


def make_course(root):
    """Write the course into `root` (config, source/, release/); returns `root` as a Path."""
    root = Path(root)
    (root / "source" / ASSIGNMENT).mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "hostilecourse"\n')
    shutil.copy(MASTER, root / "source" / ASSIGNMENT / NOTEBOOK)
    if "release" not in _made:  # nbgrader makes the student version once per process, in a throw-away course
        scratch = Path(tempfile.mkdtemp(prefix="hostilecourse-"))
        shutil.copytree(root / "source", scratch / "source")
        shutil.copy(root / "nbgrader_config.py", scratch)
        env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
        subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force",
                        f"--db=sqlite:///{scratch / 'release.db'}"], cwd=scratch, check=True, capture_output=True, env=env)
        _made["release"] = scratch / "release"
    shutil.copytree(_made["release"], root / "release", dirs_exist_ok=True)
    return root


_made = {}


def student_version(root):
    """The student version of the notebook (solutions and hidden tests removed), as a NotebookNode."""
    return nbformat.read(Path(root) / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)


def find(nb, grade_id):
    """Index of the cell with nbgrader grade_id `grade_id`."""
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def answered(nb, train=TRAIN, add=ADD, answer=ANSWER):
    """Fill the three answer cells of the student version (None: leave the stub)."""
    for grade_id, source in (("train-model", train), ("ex-add", add), ("q-written", answer)):
        if source is not None:
            nb.cells[find(nb, grade_id)].source = source
    return nb


def submit(root, student, submission):
    """Write submitted/<student>/01-softmax/: a notebook (as 01-softmax.ipynb) or {file name: bytes}."""
    folder = Path(root) / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    files = {NOTEBOOK: nbformat.writes(submission).encode()} if isinstance(submission, nbformat.NotebookNode) else submission
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder
