"""`python -m grader calibrate ASSIGNMENT`: the thresholds, measured on this machine's data.

The course's accuracy thresholds follow one rule (mnistlab.thresholds.rule): the reference
solution's checked figure, measured once per seed, and the bar a correct solution misses on fewer
than 1 seed in 100 (mean minus k(n) standard deviations, rounded down to half a point). This command measures it on whatever data this machine has: the real datasets
(after a download: MNISTLAB_DATA_SOURCE=download) or the offline stand-ins.

How: the assignment's master notebook (source/A/A.ipynb: the reference solution and every test)
runs N times as nbgrader's autograde runs it (NBGRADER_EXECUTION set, so exploratory cells are
skipped), run k with every `train.seed_everything` seed moved by 1000*k (MNISTLAB_SEED_SHIFT=k).
Each graded check hands in what it measured (mnistlab.course), and that is the figure. With
`--write` the thresholds, with the figures and the data's `.source`, go into the table the notebooks
and the grader read (mnistlab/thresholds.json).
"""

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


class CalibrationError(Exception):
    """The reference could not be measured (it failed, or handed nothing in); the message says why."""


def run_reference(master, shift, timeout=900):
    """Execute the master notebook once with seeds shifted by `shift`.

    Returns ({hand-in name: (check, figure, data source, stand-in or not)}, [errors]): one entry per
    figure a graded cell checked (a check's threshold can be checked on several figures, e.g. 04's gain
    on two sets of seeds), and the cells' errors (e.g. a figure below today's threshold: a calibration
    goes on)."""
    import nbformat
    from nbclient import NotebookClient

    from mnistlab.course import HAND_IN
    from mnistlab.train import SEED_SHIFT

    with tempfile.TemporaryDirectory() as scratch:
        handin = Path(scratch, "handin")
        handin.mkdir()
        notebook = Path(scratch, master.name)
        notebook.write_bytes(master.read_bytes())
        env = {HAND_IN: str(handin), SEED_SHIFT: str(shift), "NBGRADER_EXECUTION": "autograde",
               "MNISTLAB_QUIET": "1", "MPLBACKEND": "Agg"}
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)  # the kernel inherits this process's environment
        try:  # every cell runs, also after a failed threshold: the figure is handed in before the check
            nb = nbformat.read(notebook, as_version=4)
            NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                           resources={"metadata": {"path": scratch}}).execute()
        finally:
            for key, value in saved.items():
                os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
        errors = [f"{out.ename}: {out.evalue}"[:300] for cell in nb.cells if cell.cell_type == "code"
                  for out in cell.get("outputs", []) if out.get("output_type") == "error"]
        figures = {}
        for claim_file in sorted(handin.glob("*.claim.json")):
            claim = json.loads(claim_file.read_text())
            figures[claim["name"]] = (claim.get("check", claim["name"]), float(claim["claimed"]), claim["data"],
                                      claim["standin"])
    if not figures:
        why = f"it failed: {errors[0]}" if errors else "do its checks call course.check_accuracy?"
        raise CalibrationError(f"the reference {master.name} handed in no graded figure with seeds shifted by "
                               f"{shift}: {why}")
    return figures, errors


def calibrate(assignment, course=".", seeds=5, write=False, progress=print):
    """Measure every graded check of `assignment` on `seeds` seeds. Returns {check: summary}."""
    from mnistlab import thresholds

    if seeds < 3:
        raise ValueError("the rule needs at least 3 seeds (--seeds 3 or more)")
    master = Path(course, "source", assignment, f"{assignment}.ipynb")
    if not master.exists():
        raise FileNotFoundError(f"no master notebook {master}: is {assignment!r} an assignment of {course}?")
    runs = []
    for shift in range(seeds):
        start = time.perf_counter()
        figures, errors = run_reference(master.resolve(), shift)
        runs.append(figures)
        progress(f"  seed shift {shift}: " + ", ".join(f"{n} {f:.4f}" for n, (_, f, _, _) in sorted(figures.items()))
                 + f" ({time.perf_counter() - start:.0f} s)" + "".join(f"\n    cell error: {e}" for e in errors))
    summary = {}
    for name in sorted(runs[0]):
        check = runs[0][name][0]
        figures = [run[name][1] for run in runs if name in run]
        sources = {run[name][2:] for run in runs if name in run}  # (the data's sentence, stand-in or not)
        if len(figures) != seeds or len(sources) != 1:
            raise CalibrationError(f"{name}: measured in {len(figures)} of {seeds} runs "
                                   f"(on {sorted(sentence for sentence, _ in sources)}): "
                                   "the reference failed before that check in the others (cell errors above)")
        if len(set(figures)) == 1:  # e.g. 100% training accuracy: fine, but say it, in case seeding is broken
            progress(f"  note: {name} gave {figures[0]} on every seed (if its training does not go through "
                     "train.seed_everything, the calibration cannot vary it)")
        data, standin = sources.pop()
        summary[name] = {"name": name, "check": check, "figures": figures, "mean": statistics.mean(figures),
                         "worst": min(figures), "sd": statistics.stdev(figures),
                         "threshold": thresholds.rule(figures), "data": data, "standin": standin, "seeds": seeds}
    if write:
        for check in {m["check"] for m in summary.values()}:  # a check on several figures: the lowest bar
            measured = min((m for m in summary.values() if m["check"] == check), key=lambda m: m["threshold"])
            thresholds.record(assignment, check, measured)
    return summary


def report(assignment, summary):
    """The table the command prints: per check, the figures and the threshold the rule gives."""
    from mnistlab import thresholds

    lines = [f"{assignment}: {thresholds.RULE}",
             f"{'figure (threshold)':<34} {'mean':>7} {'worst':>7} {'sd':>7} {'rule':>7} {'table':>7}  data"]
    for name, m in summary.items():
        kind = thresholds.kind_of(m["standin"])
        shipped = thresholds.TABLE.get((assignment, m["check"]), {}).get(kind, {}).get("threshold")
        label = name if name == m["check"] else f"{name} ({m['check']})"
        lines.append(f"{label:<34} {m['mean']:7.3f} {m['worst']:7.3f} {m['sd']:7.4f} {m['threshold']:7.3f} "
                     f"{shipped if shipped is not None else '-':>7}  {kind}: {m['data'][:60]}")
    return "\n".join(lines)


def main(assignments, course=".", seeds=5, write=False):
    """The command line's `calibrate`."""
    for assignment in assignments:
        print(f"calibrating {assignment} on {seeds} seeds (each seed runs the whole reference once)", flush=True)
        summary = calibrate(assignment, course, seeds, write, progress=lambda line: print(line, flush=True))
        print(report(assignment, summary))
        if write:
            print("wrote the thresholds into mnistlab/thresholds.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
