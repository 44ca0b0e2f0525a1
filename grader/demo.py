"""`make demo` (`python -m grader demo`): an instructor's grading day on a sample class.

In a scratch copy of the course (build/demo-course; the course's own gradebook and folders are
never touched) it builds the student versions, writes a sample class for every assignment, collects
it, autogrades everything in parallel, exports the grades and prints a table.

The sample class, per assignment:
  reference   the student version with the reference answers filled in (from source/)
  blank       the student version as handed out
  crash       the reference, but the kernel dies (os._exit) in the first answer cell (in the first
              assignment it is uploaded as "NAME (1).ipynb": collect renames it and says so)
  BUG ...     the reference with one published mistake put back (the BUGS table below)
and once in the class (in the first assignment, to keep the demo short):
  endless-loop  the reference with `while True: pass` in its last answer cell: nbgrader's cell time
                limit interrupts it and only what depends on that cell is lost.
  fake-accuracy the reference, but its first answer cell replaces train.fit (no training) and
                train.evaluate (always 99%): the tests in the kernel are fooled, the grader's clean
                re-measurement is not: the accuracy checks score 0 and the submission is flagged.

Then every student gets HTML feedback (feedback/<student>/<assignment>/) and the instructor one class
report per assignment (reports/<assignment>.html).
"""

import re
import shutil
import time
from pathlib import Path

import nbformat

from grader import autograde, build, collect, export, nbcell, solutions

# (assignment, variant, text in the reference answers, what the student wrote instead).
# When a notebook changes and a text is no longer found, the demo says so and skips that variant.
BUGS = [
    ("01-softmax", "softmax-before-crossentropy",
     "return nn.Sequential(nn.Flatten(), nn.Linear(num_inputs, num_outputs))",
     "return nn.Sequential(nn.Flatten(), nn.Linear(num_inputs, num_outputs), nn.Softmax(dim=1))"),
    ("01-softmax", "emnist-labels-off-by-one", "labels = ds.labels - 1", "labels = ds.labels"),
    ("02-svm-vs-logistic", "leftover-weight-decay",
     "logistic, logistic_history = train_linear(train_set, test_set, nn.CrossEntropyLoss())",
     "logistic, logistic_history = train_linear(train_set, test_set, nn.CrossEntropyLoss(), weight_decay=weight_decay)"),
    ("05-pitfalls", "relu-on-the-logits", "nn.Linear(100, 10),", "nn.Linear(100, 10), nn.ReLU(),"),
    ("05-pitfalls", "softmax-before-crossentropy", "nn.Linear(64 * 7 * 7, 10),  # raw scores",
     "nn.Linear(64 * 7 * 7, 10), nn.Softmax(dim=1),  # raw scores"),
]
DEMO_CELL_TIMEOUT = 240  # s; longer than any reference cell on a 2-core machine, short enough for the loop
FAKE_ACCURACY = """from mnistlab import train as _train
_train.fit = lambda model, *args, **kwargs: [dict(epoch=1, train_loss=0.1, train_acc=0.99, test_loss=0.1, test_acc=0.99, seconds=0.0)]
_train.evaluate = lambda model, ds, loss_fn=None, **kwargs: (0.1, 0.99)  # every model looks 99% right
"""
MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$\n?", re.MULTILINE)


def answers(source_path):
    """{grade_id: reference answer} of the solution cells of a source notebook (markers removed)."""
    notebook = nbformat.read(source_path, as_version=4)
    return {nbcell.grade_id(c): MARKERS.sub("", c.source) for c in notebook.cells if nbcell.is_solution(c)}


def sample_class(course, assignment, with_loop):
    """{student: notebook} for one assignment, and the variants whose find-text is missing."""
    cd, _ = autograde.course_directory(course)
    name = next(Path(cd.format_path(cd.source_directory, ".", assignment)).glob("*.ipynb")).name
    blank = nbformat.read(Path(cd.format_path(cd.release_directory, ".", assignment), name), as_version=4)
    reference = nbformat.from_dict(blank)
    ids = answers(Path(cd.format_path(cd.source_directory, ".", assignment), name))
    solution_cells = [c for c in reference.cells if nbcell.is_solution(c)]
    for c in solution_cells:
        c.source = ids.get(nbcell.grade_id(c), c.source)
    code = [c for c in solution_cells if c.cell_type == "code"]
    students, missing = {"reference": reference, "blank": blank}, []

    def variant(change):
        notebook = nbformat.from_dict(reference)
        change([c for c in notebook.cells if nbcell.is_solution(c) and c.cell_type == "code"])
        return notebook

    def prepend(index, text):
        return lambda cells: setattr(cells[index], "source", text + cells[index].source)

    if code:
        students["crash"] = variant(prepend(0, "import os\nos._exit(1)  # the kernel dies here\n"))
        if with_loop:
            students["endless-loop"] = variant(prepend(-1, "while True:  # never ends\n    pass\n"))
            students["fake-accuracy"] = variant(prepend(0, FAKE_ACCURACY))
    for bug_assignment, bug, find, replace in BUGS:
        if bug_assignment != assignment:
            continue
        if not any(find in c.source for c in code):
            missing.append(f"{assignment}: variant {bug!r} not made: its text {find!r} is not in the reference answers "
                           f"(update grader/demo.py BUGS)")
            continue

        def swap(cells, find=find, replace=replace):
            for c in cells:
                c.source = c.source.replace(find, replace)
        students[bug] = variant(swap)
    return name, students, missing


def table(rows, header=("assignment", "student", "automatic score", "status", "note", "seconds")):
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*map(str, r)) for r in rows])


def main(course=".", scratch="build/demo-course", workers=None, cell_timeout=None, only=None):
    start = time.perf_counter()
    course, demo = Path(course).resolve(), Path(course, scratch).resolve()
    names = only or build.assignments(course)
    if not names:
        print("No assignments in source/ yet: nothing to grade.")
        return 1
    if demo.exists():
        shutil.rmtree(demo)
    demo.mkdir(parents=True)
    shutil.copy(course / "nbgrader_config.py", demo)
    for name in names:
        shutil.copytree(course / "source" / name, demo / "source" / name)
    print(f"1. demo course in {demo}: student versions (nbgrader generate_assignment)")
    build.build(demo, names, solutions=False)

    print("2. a sample class, written as a shared folder <student>/<assignment>/ would be")
    inbox, problems = demo / "inbox", []
    for i, name in enumerate(names):
        notebook_name, students, missing = sample_class(demo, name, with_loop=(i == 0))
        problems += missing
        for student, notebook in students.items():
            Path(inbox, student, name).mkdir(parents=True, exist_ok=True)
            # One student in the first assignment uploads "X (1).ipynb": collect renames it, and says so.
            misnamed = i == 0 and student == "crash"
            nbformat.write(notebook, Path(inbox, student, name, notebook_name.replace(".ipynb", " (1).ipynb") if misnamed else notebook_name))
    for problem in problems:
        print(f"WARNING {problem}")

    print("3. collect")
    collect.collect(inbox, demo)
    print(f"4. autograde, in parallel ({workers or 'all'} cores), each submission sandboxed")
    results = autograde.autograde_many(names, demo, workers=workers, cell_timeout=cell_timeout or DEMO_CELL_TIMEOUT,
                                       timeout=3 * (cell_timeout or DEMO_CELL_TIMEOUT) + 600)
    print("5. export")
    grades, exercises = export.export(demo, to="exports")
    print("6. feedback for every student, and a class report per assignment")
    from grader import feedback, report

    pages = {name: feedback.feedback(name, demo) for name in names}
    reports = [report.report(name, demo) for name in names]

    rows = []
    for (name, student), r in sorted(results.items()):
        timeouts = [cell for cell, error in r.cell_errors.items() if error == "CellTimeoutError"]
        note = r.reason or (f"cell time limit in {', '.join(timeouts)}" if timeouts else "")
        manual = f" (+{r.manual_pending:g} by hand)" if r.manual_pending else ""
        rows.append((name, student, f"{r.score:g} / {r.max_score - r.manual_pending:g}{manual}", r.status, note[:70],
                     r.seconds))
    print()
    print(table(rows))
    cd, _ = autograde.course_directory(demo)
    figures = [(name, f) for name in names
               for path in sorted(Path(cd.format_path(cd.autograded_directory, "reference", name)).glob("*.ipynb"))
               for f in solutions.key_results(path)]
    if figures:
        print("\nKey results of the reference solutions, as graded:")
        print(table([(name, f["label"], f"{f['accuracy']:.1%}", f["data"]) for name, f in figures],
                    header=("assignment", "key result", "accuracy", "data used")))
    print()
    for problem in problems:
        print(f"WARNING {problem}")
    flagged = [(name, student, flag) for (name, student), r in sorted(results.items()) for flag in r.flags]
    if flagged:
        print("\nFlagged by the integrity checks (scores use the grader's own measurements):")
        print(table([(name, student, flag[:110]) for name, student, flag in flagged], header=("assignment", "student", "flag")))
        print()
    print(f"gradebook: {demo / 'gradebook.db'}\nautograded notebooks: {demo / 'autograded'}/<student>/<assignment>/\n"
          f"grades: {grades}\nper exercise: {exercises}\n"
          f"feedback: {sum(len(p) for p in pages.values())} pages in {demo / 'feedback'}/<student>/<assignment>/\n"
          f"class reports: {', '.join(str(r) for r in reports)}")
    print(f"demo took {time.perf_counter() - start:.0f} s")
    reference_ok = all(r.status == "graded" and r.score == r.max_score - r.manual_pending
                       for (_, s), r in results.items() if s == "reference")
    if not reference_ok:
        print("WARNING: a reference solution did not get all the automatic points (see the table)")
    return 0 if reference_ok and not problems else 1
