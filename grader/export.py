"""`python -m grader export`: the grades as CSV files, with nbgrader's export machinery.

  grades.csv     one row per student and assignment: nbgrader's own CsvExportPlugin
  exercises.csv  one row per student, assignment and graded cell (ExercisesExportPlugin below),
                 with a note when the submission could not be graded (crash, time or memory limit)
"""

import csv
import os
from pathlib import Path

from nbgrader.plugins import CsvExportPlugin, ExportPlugin

from grader.course import course_directory


class ExercisesExportPlugin(ExportPlugin):
    """One row per graded cell. Also usable as `nbgrader export --exporter grader.export.ExercisesExportPlugin`."""

    def export(self, gradebook):
        with open(self.to or "exercises.csv", "w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["assignment", "student_id", "notebook", "exercise", "score", "max_score",
                          "auto_score", "manual_score", "needs_manual_grade", "note"])
            for assignment in gradebook.assignments:
                if self.assignment and assignment.name not in self.assignment:
                    continue
                for submission in sorted(assignment.submissions, key=lambda s: s.student.id):
                    if self.student and submission.student.id not in self.student:
                        continue
                    for notebook in submission.notebooks:
                        notes = {c.auto_comment for c in notebook.comments if (c.auto_comment or "").startswith("Not graded:")}
                        for grade in sorted(notebook.grades, key=lambda g: g.name):
                            out.writerow([assignment.name, submission.student.id, notebook.name, grade.name, grade.score,
                                          grade.max_score, grade.auto_score, grade.manual_score, grade.needs_manual_grade,
                                          "; ".join(sorted(notes))])


def export(course=".", db=None, to="exports", assignments=None):
    """Write grades.csv and exercises.csv into the folder `to`; returns their paths."""
    from nbgrader.api import Gradebook

    cd, _ = course_directory(course, db)
    folder = Path(to) if os.path.isabs(to) else Path(cd.root, to)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "grades.csv", folder / "exercises.csv"]
    with Gradebook(cd.db_url, cd.course_id) as gb:
        for plugin, path in zip((CsvExportPlugin, ExercisesExportPlugin), paths):
            plugin(to=str(path), assignment=list(assignments or [])).export(gb)
    for path in paths:
        print(f"wrote {path}")
    return paths
