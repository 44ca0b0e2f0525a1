"""grader/gradebook.py: the revision a new gradebook is stamped with, read from nbgrader's migration scripts
without alembic (head_in_text), must be the one alembic itself names; scripts it cannot read plainly give None
(then alembic decides)."""

import os
from pathlib import Path

import nbgrader.api
from alembic.script import ScriptDirectory

from grader import gradebook

SCRIPTS = os.path.join(os.path.dirname(nbgrader.api.__file__), "alembic")


def script(folder, name, revision, down):
    down = "None" if down is None else repr(down)
    (folder / f"{name}.py").write_text(f'"""{name}"""\nrevision = {revision!r}\ndown_revision = {down}\n\n'
                                       "def upgrade():\n    pass\n")


def test_the_head_read_from_nbgraders_scripts_is_alembics():
    assert gradebook.head_in_text(Path(SCRIPTS, "versions").glob("*.py")) == ScriptDirectory(SCRIPTS).get_current_head()
    assert gradebook.alembic_head() == ScriptDirectory(SCRIPTS).get_current_head()


def test_a_chain_of_scripts_has_its_last_revision_as_head(tmp_path):
    script(tmp_path, "a", "aaa", None)
    script(tmp_path, "b", "bbb", "aaa")
    script(tmp_path, "c", "ccc", "bbb")
    assert gradebook.head_in_text(tmp_path.glob("*.py")) == "ccc"


def test_branches_and_unreadable_scripts_are_left_to_alembic(tmp_path):
    script(tmp_path, "a", "aaa", None)
    script(tmp_path, "b", "bbb", "aaa")
    script(tmp_path, "c", "ccc", "aaa")  # two heads
    assert gradebook.head_in_text(tmp_path.glob("*.py")) is None

    merged = tmp_path / "merged"
    merged.mkdir()
    script(merged, "a", "aaa", None)
    (merged / "m.py").write_text("revision = 'mmm'\ndown_revision = ('aaa', 'bbb')\n")  # a merge: not one parent
    assert gradebook.head_in_text(merged.glob("*.py")) is None

    orphan = tmp_path / "orphan"
    orphan.mkdir()
    script(orphan, "b", "bbb", "missing")  # its parent is not among the scripts
    assert gradebook.head_in_text(orphan.glob("*.py")) is None
