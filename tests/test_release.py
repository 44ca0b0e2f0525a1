"""What students receive (`python -m grader release`): everything they need, nothing hidden."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader import release

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = sorted(p.name for p in (ROOT / "source").iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """The release, built once for this module: (folder, exchange folder)."""
    to = tmp_path_factory.mktemp("dist")
    folder = release.build(ROOT, to, exchange=to / "exchange")
    return folder, to / "exchange"


def files_in(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def hidden_test_regions():
    """The masters' hidden-test regions, as lists of stripped lines (read here independently of release.py)."""
    regions = []
    for path in (ROOT / "source").glob("*/*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            lines, inside = [], False
            for line in cell.source.splitlines():
                if "### BEGIN HIDDEN TESTS" in line:
                    inside, lines = True, []
                elif "### END HIDDEN TESTS" in line:
                    inside = False
                    regions.append(lines)
                elif inside and line.strip():
                    lines.append(line.strip())
    return regions


def test_the_release_holds_what_a_student_needs_and_no_instructor_folder(released):
    folder, _ = released
    top = {p.name for p in folder.iterdir()}
    assert top == {"README.md", "Makefile", "start_lab.py", "pyproject.toml", "mnistlab", "notebooks", "jupyter"}
    files = files_in(folder)
    assert [f for f in files if f.startswith("notebooks/")] == [f"notebooks/{a}/{a}.ipynb" for a in ASSIGNMENTS]
    for a in ASSIGNMENTS:  # the notebooks are nbgrader's student versions, as generated
        assert (folder / "notebooks" / a / f"{a}.ipynb").read_bytes() == (ROOT / "notebooks" / a / f"{a}.ipynb").read_bytes()
    assert not [f for f in files if f.split("/")[0] in {"source", "solutions", "grader", "tests", "bench"}]
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    # The helper package whole, subpackages included, and the student pyproject.toml lists each one.
    assert [f for f in files if f.startswith("mnistlab/")] == sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "mnistlab").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert 'packages = ["mnistlab", "mnistlab.diagnose"]' in (folder / "pyproject.toml").read_text()
    # The hand-in loader is the grader's: students only export and save.
    handin = (folder / "mnistlab" / "handin.py").read_text()
    assert "def export(" in handin and "def save(" in handin
    assert "def load(" not in handin and "check_graph" not in handin and "UnsafeArtifact" not in handin
    # The zip holds the same files.
    with zipfile.ZipFile(f"{folder}.zip") as archive:
        names = sorted(n.split("/", 1)[1] for n in archive.namelist() if not n.endswith("/"))
    assert names == files


def test_no_file_of_the_release_holds_a_hidden_test_or_a_solution(released):
    folder, exchange = released
    assert release.leaks(folder, ROOT / "source") == []
    assert release.leaks(exchange, ROOT / "source") == []
    # An independent check: no whole hidden-test region, and no distinctive line of one, anywhere.
    regions = hidden_test_regions()
    assert len(regions) >= 5
    public = "\n".join(nbformat.read(p, as_version=4).cells[i].source for p in folder.glob("notebooks/*/*.ipynb")
                       for i in range(len(nbformat.read(p, as_version=4).cells)))
    everything = "\n".join(release.readable_text(p) for p in list(folder.rglob("*")) + list(exchange.rglob("*"))
                           if p.is_file())
    for region in regions:
        for line in region:
            if len(line) >= 20 and line not in public and ("assert" in line or "hand_in" in line):
                assert line not in everything, f"a hidden test line reached the release: {line}"
    assert "BEGIN HIDDEN TESTS" not in everything and "BEGIN SOLUTION" not in everything


def test_leaks_finds_hidden_text_in_any_file_and_any_form(released, tmp_path):
    folder, _ = released
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    regions, _ = release.secret_regions(ROOT / "source")
    hidden = next(line for region in hidden_test_regions() for line in region if "hand_in" in line and len(line) > 30)
    solution = next(r for r in regions if len(r) >= 4)
    # 1. a hidden test line inside a notebook cell
    path = copy / "notebooks" / ASSIGNMENTS[0] / f"{ASSIGNMENTS[0]}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].source += "\n" + hidden
    nbformat.write(nb, path)
    # 2. a solution block pasted into the README, indented differently
    with open(copy / "README.md", "a") as handle:
        handle.write("\n".join("        " + line for line in solution) + "\n")
    # 3. a file inside a zip
    with zipfile.ZipFile(copy / "extra.zip", "w") as archive:
        archive.writestr("notes.txt", f"x = 1\n{hidden}\n")
    found = release.leaks(copy, ROOT / "source")
    assert any(f.startswith(f"notebooks/{ASSIGNMENTS[0]}/") for f in found)
    assert any(f.startswith("README.md") for f in found)
    assert any(f.startswith("extra.zip") for f in found)


def test_a_course_whose_student_notebooks_hold_solutions_is_not_released(tmp_path):
    """If notebooks/ were the solutions (a wrong build), `release` refuses and leaves nothing behind."""
    course = tmp_path / "course"
    course.mkdir()
    for name in ("nbgrader_config.py", "pyproject.toml"):
        shutil.copy(ROOT / name, course / name)
    shutil.copytree(ROOT / "source", course / "source")
    shutil.copytree(ROOT / "mnistlab", course / "mnistlab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "source", course / "notebooks")  # the masters, hidden tests and all
    with pytest.raises(release.LeakError, match="BEGIN HIDDEN TESTS"):
        release.build(course, tmp_path / "dist")
    assert not (tmp_path / "dist" / "mnistlab-student").exists()
    assert not (tmp_path / "dist" / "mnistlab-student.zip").exists()


def test_the_exchange_gets_nbgraders_release_of_every_assignment(released):
    _, exchange = released
    for a in ASSIGNMENTS:
        released_nb = exchange / "mnistlab" / "outbound" / a / f"{a}.ipynb"
        assert released_nb.read_bytes() == (ROOT / "notebooks" / a / f"{a}.ipynb").read_bytes()


def test_students_install_only_what_the_notebooks_need(released):
    import tomllib

    folder, _ = released
    student = tomllib.loads((folder / "pyproject.toml").read_text())["project"]["dependencies"]
    instructor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert set(student) < set(instructor)
    names = {d.split(">")[0].split("=")[0] for d in student}
    assert {"torch", "torchvision", "jupyterlab", "ipywidgets", "nbgrader", "mlxtend"} <= names
    assert not names & release.INSTRUCTOR_ONLY
    config = (folder / "jupyter" / "nbgrader_config.py").read_text()
    assert "c.Execute.timeout = 300" in config  # Validate gets the course's cell time limit


def test_the_student_lab_is_set_up_for_a_student(released, monkeypatch):
    folder, _ = released
    disabled = json.loads((folder / "jupyter" / "labconfig" / "page_config.json").read_text())["disabledExtensions"]
    for plugin in ("create-assignment", "formgrader", "course-list", "assignment-list"):
        assert disabled[f"@jupyter/nbgrader:{plugin}"] is True
    server = json.loads((folder / "jupyter" / "jupyter_server_config.json").read_text())
    assert server["ServerApp"]["jpserver_extensions"]["nbgrader.server_extensions.validate_assignment"] is True
    widgets = folder / "jupyter" / "lab" / "user-settings" / "@jupyter-widgets" / "jupyterlab-manager" / "plugin.jupyterlab-settings"
    assert json.loads(widgets.read_text())["saveState"] is True
    news = folder / "jupyter" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    assert json.loads(news.read_text())["checkForUpdates"] is False  # no pop-up asking to fetch news
    # start_lab.py: offline unless told otherwise, the course's Jupyter settings, the release's package.
    sys.path.insert(0, str(folder))
    try:
        import start_lab
    finally:
        sys.path.remove(str(folder))
    monkeypatch.setenv("MPLBACKEND", "Agg")  # as under `make test`: the lab must not inherit it
    monkeypatch.setenv("MNISTLAB_QUIET", "1")
    env = start_lab.lab_environment("offline")
    assert "MPLBACKEND" not in env and "MNISTLAB_QUIET" not in env
    assert env["MNISTLAB_DATA_SOURCE"] == "offline"
    assert env["JUPYTER_CONFIG_DIR"] == str(folder / "jupyter")
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(folder)
    # The command it runs works (here: JupyterLab's version, instead of starting a server).
    done = subprocess.run([sys.executable, str(folder / "start_lab.py"), "--version"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("Data: the offline stand-ins"), done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1][0].isdigit()  # e.g. 4.6.6


RUN_FIRST_CELLS = r"""
import sys, nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
import mnistlab
print("mnistlab from", mnistlab.__file__)
nb = nbformat.read(sys.argv[1], as_version=4)
client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}})
with client.setup_kernel():
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        try:
            client.execute_cell(cell, index)
        except CellExecutionError as error:
            grade = cell.metadata.get("nbgrader", {})
            print("STOPPED", index, grade.get("grade_id"), grade.get("solution"), error.ename)
            break
        print("RAN", index)
"""


@pytest.mark.timeout(1200)
def test_the_release_installs_in_a_fresh_venv_and_a_blank_notebook_runs_to_its_first_exercise(released, tmp_path):
    """A student's first minutes: unzip, install into a new virtual environment, run the notebook."""
    folder, _ = released
    unpacked = tmp_path / "student"
    with zipfile.ZipFile(f"{folder}.zip") as archive:
        archive.extractall(unpacked)
    course = unpacked / folder.name
    venv = tmp_path / "venv"
    subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(course)], capture_output=True,
                             text=True, timeout=1200)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "JUPYTER"))}
    env.update(MNISTLAB_DATA_SOURCE="offline", MPLBACKEND="Agg",
               PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    notebook = course / "notebooks" / "01-softmax" / "01-softmax.ipynb"
    run = subprocess.run([str(python), "-c", RUN_FIRST_CELLS, str(notebook), str(notebook.parent)],
                         capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"mnistlab from {venv}" in run.stdout  # the installed package, not this checkout's
    # Its subpackages are installed too (setuptools installs only the packages pyproject.toml lists).
    sub = subprocess.run([str(python), "-c", "import mnistlab.diagnose as d; print(d.__file__)"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert sub.returncode == 0 and sub.stdout.startswith(str(venv)), sub.stdout + sub.stderr[-3000:]
    # Every code cell ran up to the first exercise's test, which stops on the blank stub.
    cells = nbformat.read(notebook, as_version=4).cells
    code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
    first_solution = next(i for i in code if cells[i].metadata.get("nbgrader", {}).get("solution"))
    first_test = next(i for i in code if i > first_solution and cells[i].metadata.get("nbgrader", {}).get("grade"))
    ran = [int(line.split()[1]) for line in run.stdout.splitlines() if line.startswith("RAN")]
    assert ran == [i for i in code if i < first_test], run.stdout
    stopped = [line for line in run.stdout.splitlines() if line.startswith("STOPPED")]
    assert stopped == [f"STOPPED {first_test} {cells[first_test].metadata.nbgrader.grade_id} False NotImplementedError"]


def _base_python():
    """The Python the project's venv was made from: what a student would have."""
    return getattr(sys, "_base_executable", None) or sys.executable
