"""Another nbgrader course, lightly: nbgrader's own documentation course `ps1`, from nbgrader's installed
package data (its notebooks are nbformat 4.0: no cell ids; its two students' submissions and the grades
nbgrader published for them in its docs' grades.csv).

`python -m grader` collects, autogrades, exports and writes feedback for it in processes where importing
PyTorch fails (a sitecustomize puts a blocking finder first in sys.meta_path, in every process: the
command, the Dask workers, the sandboxed nbgrader), and every blocked import is logged: collect,
autograde and export must attempt none. The grades must be nbgrader's published ones; the notebooks
must stay valid nbformat 4.0 (no `id` fields, no note about renumbered ids). `collect --collector`
reads an LMS zip with the docs' own custom collector plugin, which fixes the submission times.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader import GraderError, collect, preflight
from grader.build import tool_env

pytestmark = pytest.mark.timeout(300)
CHECKOUT = Path(__file__).resolve().parent.parent


def docs():
    import nbgrader

    folder = Path(nbgrader.__file__).parent / "docs" / "source" / "user_guide"
    if not (folder / "source" / "ps1").is_dir():
        pytest.skip("nbgrader's documentation course is not installed with nbgrader")
    return folder


BLOCKER = '''
import os, sys, traceback

class NoTorch:
    """Importing torch (or torchvision) fails, and says where it was tried."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            with open(os.environ["BLOCKED_IMPORTS"], "a") as log:
                log.write(f"{os.getpid()} {sys.argv[:3]}: {name}\\n{''.join(traceback.format_stack(limit=30))}\\n")
            raise ImportError(f"importing {name} is blocked (tests/test_foreign_course.py)")
        return None

sys.meta_path.insert(0, NoTorch())
'''

PLUGIN = '''
from nbgrader.plugins import FileNameCollectorPlugin


class CustomPlugin(FileNameCollectorPlugin):
    """nbgrader's documented example (Managing assignment files manually): the LMS's times, read right."""
    def collect(self, submission_file):
        info = super(CustomPlugin, self).collect(submission_file)
        if info is not None:
            info['timestamp'] = '{}-{}-{} {}:{}:{}'.format(*tuple(info['timestamp'].split('-')))
        return info
'''

CONFIG = '''c = get_config()
c.CourseDirectory.course_id = "example_course"
c.FileNameCollectorPlugin.named_regexp = r".*_(?P<student_id>\\w+)_attempt_(?P<timestamp>[0-9\\-]+)_(?P<file_id>.*)"
'''


@pytest.fixture
def course(tmp_path):
    """ps1's source in a new course folder, with the docs' config and collector plugin; (course, env, log)."""
    course = tmp_path / "ps1course"
    shutil.copytree(docs() / "source" / "ps1", course / "source" / "ps1")
    (course / "nbgrader_config.py").write_text(CONFIG)
    (course / "plugin.py").write_text(PLUGIN)
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    log = tmp_path / "blocked-imports.log"
    env = tool_env(PYTHONPATH=os.pathsep.join([str(blocker), str(CHECKOUT)]), BLOCKED_IMPORTS=str(log))
    return course, env, log


def grader(env, *args, cwd):
    run = subprocess.run([sys.executable, "-m", "grader", *args], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def blocked(log):
    return log.read_text() if log.exists() else ""


def test_blocker_blocks(course):
    _, env, log = course
    run = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert run.returncode != 0 and "blocked" in run.stderr and "torch" in blocked(log)


def test_nbgrader_docs_course_without_torch(course):
    course, env, log = course
    where = docs()
    out = grader(env, "collect", str(where / "submitted"), "--course", str(course), cwd=course)
    assert "collected 2 submission(s)" in out
    # The docs' notebooks carry nbgrader's old metadata: nbgrader itself asks for `nbgrader update` first.
    subprocess.run([sys.executable, "-m", "nbgrader", "update", "."], cwd=course, env=env, check=True, capture_output=True)
    out = grader(env, "autograde", "ps1", "--course", str(course), "--workers", "2", "--no-progress", cwd=course)
    assert "2 of 2 submission(s) graded" in out, out
    grader(env, "export", "--course", str(course), cwd=course)
    assert blocked(log) == "", f"collect, autograde or export tried to import PyTorch:\n{blocked(log)}"

    published = {row["student_id"]: row for row in csv.DictReader((where / "grades.csv").open())}
    ours = {row["student_id"]: row for row in csv.DictReader((course / "exports" / "grades.csv").open())}
    assert {s: float(r["score"]) for s, r in ours.items()} == {s: float(r["score"]) for s, r in published.items()}
    assert {s: r["timestamp"] for s, r in ours.items()} == {s: r["timestamp"] for s, r in published.items()}

    for student in ("bitdiddle", "hacker"):
        record = json.loads((course / "autograded" / student / "ps1" / ".grader.json").read_text())
        assert record["checks"] == [] and not any("cell-ids" in note for note in record["cell_notes"]), record
        for notebook in (course / "autograded" / student / "ps1").glob("*.ipynb"):
            nb = nbformat.read(notebook, as_version=nbformat.NO_CONVERT)
            assert (nb.nbformat, nb.nbformat_minor) == (4, 0)
            assert not any("id" in cell for cell in nb.cells)
            nbformat.validate(nb)

    out = grader(env, "feedback", "ps1", "--course", str(course), cwd=course)
    assert "feedback for 2 student(s)" in out
    assert (course / "feedback" / "hacker" / "ps1" / "problem1.html").exists()


def lms_zip(path):
    """The docs' LMS download (downloaded/ps1/archive): notebooks.zip's files and the loose late upload, in one zip."""
    archive = docs() / "downloaded" / "ps1" / "archive"
    with zipfile.ZipFile(path, "w") as out, zipfile.ZipFile(archive / "notebooks.zip") as inner:
        for info in inner.infolist():
            out.writestr(info.filename, inner.read(info))
        late = "ps1_hacker_attempt_2016-01-30-20-30-10_problem1.ipynb"
        out.write(archive / late, late)
    return path


def test_collect_with_a_collector_plugin(course, tmp_path):
    """The docs' regular expression alone reads "2016-01-30-20-30-10" wrong (dateutil); the docs' CustomPlugin,
    given as --collector as to `nbgrader zip_collect`, reads it right. Without PyTorch, too."""
    course, env, log = course
    archive = lms_zip(tmp_path / "lms.zip")
    stamps = {}
    for collector in ([], ["--collector", "plugin.CustomPlugin"]):
        out = grader(env, "collect", str(archive), "--assignment", "ps1", "--course", str(course), *collector, cwd=tmp_path)
        assert "collected 2 submission(s)" in out and "hacker/ps1/myproblem1.ipynb: skipped" in out
        stamps[bool(collector)] = {s: (course / "submitted" / s / "ps1" / "timestamp.txt").read_text()
                                   for s in ("bitdiddle", "hacker")}
    assert stamps[True] == {"bitdiddle": "2016-01-30T15:30:10", "hacker": "2016-01-30T20:30:10"}  # the newest upload
    assert stamps[False] != stamps[True]
    assert sorted(p.name for p in (course / "submitted" / "hacker" / "ps1").iterdir()) == [
        "problem1.ipynb", "problem2.ipynb", "timestamp.txt"]
    assert blocked(log) == ""

    with pytest.raises(GraderError, match="cannot import"):
        collect.collect(archive, course, "ps1", collector="no_such_module.Plugin")
    with pytest.raises(GraderError, match="FileNameCollectorPlugin"):
        collect.collect(archive, course, "ps1", collector="nbgrader.plugins.ExportPlugin")
    with pytest.raises(GraderError, match="LMS zip"):
        collect.collect(docs() / "submitted", course, collector="plugin.CustomPlugin")


def test_preflight_keeps_nbformat_4_0_without_ids():
    """A 4.0 notebook has no cell ids: nothing is "renumbered", nothing is rewritten; one with a duplicated grade
    cell is repaired and stays valid 4.0."""
    where = docs()
    master = (where / "source" / "ps1" / "problem1.ipynb").read_bytes()
    submitted = (where / "submitted" / "hacker" / "ps1" / "problem1.ipynb").read_bytes()
    files = {"source/ps1/problem1.ipynb": master, "submitted/hacker/ps1/problem1.ipynb": submitted}
    out, problems, notes = preflight.check_notebooks({"files": files})
    assert (out, problems, notes) == (files, [], {})

    nb = nbformat.reads(submitted.decode(), as_version=nbformat.NO_CONVERT)
    graded = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    nb.cells.append(nbformat.from_dict(json.loads(json.dumps(graded))))  # a copy of a graded cell
    files["submitted/hacker/ps1/problem1.ipynb"] = nbformat.writes(nb).encode()
    out, problems, notes = preflight.check_notebooks({"files": files})
    repaired = nbformat.reads(out["submitted/hacker/ps1/problem1.ipynb"].decode(), as_version=nbformat.NO_CONVERT)
    assert (repaired.nbformat, repaired.nbformat_minor) == (4, 0) and not any("id" in c for c in repaired.cells)
    nbformat.validate(repaired)
    assert not any("cell-ids" in key for key in notes)
