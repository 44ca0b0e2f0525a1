"""The accuracy thresholds of every graded check: one table for the whole course (thresholds.json).

Keyed by "assignment/check" and by the data actually used: "full" (torchvision's datasets) or
"offline" (the stand-ins of mnistlab.standins, used by CI). Every measured threshold follows one
rule (`rule`, below): the reference solution's checked figure, measured once per seed, and the bar
that a correct solution misses on fewer than 1 seed in 100 (mean minus k standard deviations). Each entry keeps the figures it was set from, the
data they were measured on, how to measure them again, and notes (e.g. how the known-broken
variants fare: a broken variant that passes the rule's bar is caught by another test, and the notes
say which). Where the full datasets could not be run, a "full" value comes from published figures
with a margin; its notes say so, and `figures` is empty.

Instructors with internet measure the "full" column on the real data once:
    MNISTLAB_DATA_SOURCE=download python -m grader calibrate 01-softmax --write
"""

import json
import math
import statistics
from pathlib import Path

TABLE_FILE = Path(__file__).with_name("thresholds.json")
RULE = ("the lower 95%-confidence bound under which only 1% of the reference's runs fall: mean - k(n) standard "
        "deviations of its figure over n seeds, rounded down to half a point")
# k(n): the one-sided normal tolerance factor for 99% coverage at 95% confidence from n runs
# (scipy.stats.nct.ppf(0.95, n - 1, 2.326 * sqrt(n)) / sqrt(n)). Few seeds say little about the spread,
# so k is large for them; with many it tends to 2.33.
TOLERANCE_FACTOR = {3: 10.553, 4: 7.042, 5: 5.741, 6: 5.062, 7: 4.642, 8: 4.354, 9: 4.143, 10: 3.981, 11: 3.852,
                    12: 3.747, 13: 3.659, 14: 3.585, 15: 3.52, 16: 3.464, 17: 3.414, 18: 3.37, 19: 3.331, 20: 3.295}


def _load():
    """{(assignment, check): {"offline": entry, "full": entry}} from thresholds.json."""
    table = json.loads(TABLE_FILE.read_text())
    return {tuple(key.split("/", 1)): value for key, value in table.items() if "/" in key}


TABLE = _load()


def kind_of(standin):
    """The table's column for data that is an offline stand-in (standin=True: "offline") or torchvision's
    real dataset (standin=False: "full"). Pass a Dataset's `.standin`, e.g. kind_of(test.standin)."""
    if not isinstance(standin, bool):
        raise TypeError(f"kind_of takes a Dataset's .standin (True or False), got {standin!r}: "
                        "pass ds.standin, not ds.source")
    return "offline" if standin else "full"


def rule(figures):
    """The course's one rule for a threshold, from the reference solution's checked figure measured once
    per seed (3 to 20 seeds): mean - k(n) * standard deviation, rounded down to half a point, so that a
    correct solution fails on an unlucky seed in fewer than 1 run in 100 (95% confidence). Never moved
    after looking at a broken variant: a broken variant that passes is caught by another test, or the
    notes say that accuracy cannot tell it apart."""
    figures = [float(f) for f in figures]
    if not 3 <= len(figures) <= max(TOLERANCE_FACTOR):
        raise ValueError(f"the rule needs the reference's figure on 3 to {max(TOLERANCE_FACTOR)} seeds, got {len(figures)}")
    value = statistics.mean(figures) - TOLERANCE_FACTOR[len(figures)] * statistics.stdev(figures)
    return math.floor(value * 200 + 1e-9) / 200


def threshold(assignment, check, ds):
    """The minimum accuracy for `check` of `assignment`, for the data `ds` actually is."""
    kind = kind_of(ds.standin)
    try:
        return TABLE[assignment, check][kind]["threshold"]
    except KeyError:
        known = sorted(check for (a, check) in TABLE if a == assignment)
        raise KeyError(f"no threshold for {assignment}/{check} ({kind} data); known checks: {known}") from None


def record(assignment, check, measured):
    """Write a calibration (grader/calibrate.py) into thresholds.json, keeping the entry's notes.

    measured: the figures, the data's sentence ("data"), and "standin": whether that data was a stand-in."""
    table = json.loads(TABLE_FILE.read_text())
    key = f"{assignment}/{check}"
    kind = kind_of(measured["standin"])
    entry = table.setdefault(key, {}).setdefault(kind, {})
    entry.update(threshold=rule(measured["figures"]), figure=measured.get("name", check),
                 figures=[round(f, 6) for f in measured["figures"]],
                 data=measured["data"], seeds=measured["seeds"],
                 measured_by=f"python -m grader calibrate {assignment} --seeds {measured['seeds']}")
    entry.setdefault("notes", "")
    TABLE_FILE.write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n")
    TABLE[assignment, check] = table[key]
