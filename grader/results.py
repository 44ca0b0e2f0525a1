"""One clean check of a submission, typed: what the grader measured or decided for one grade cell.

The clean process (grader/clean.py for the accuracy checks, grader/decide for the test cells) makes
these; the record (.grader.json), the feedback page, the class report and the demo read them. They travel
as JSON (out of the sandbox, into the record): `to_json()` and `CheckResult.from_json()`, which keeps the
known fields of an older or partial record and drops anything else.

  kind       "accuracy" (a handed-in model measured again), "gain" (trained again with a handed-in
             augmentation) or "test" (a test cell decided from the values it handed in)
  passed     the grader's verdict; it sets the cell's score (grader/rescore.py)
  threshold, claimed, clean   the figure to reach, the notebook's own figure, the grader's
  pool, shifted               the grader's figure on training images and on the test images moved by a pixel
  findings   mnistlab.diagnose's findings (dicts), when a threshold was missed
  flag       a line for a human (the submission is flagged), or None
"""

from dataclasses import asdict, dataclass, fields

# Notebook and grader measure the same model on the same data: only float noise may part them ("gain" retrains).
TOLERANCE = {"accuracy": 0.005, "gain": 0.02}


@dataclass
class CheckResult:
    name: str
    cell: str
    kind: str = "accuracy"
    passed: bool = False
    reason: str = None
    threshold: float = None
    claimed: float = None
    clean: float = None
    pool: float = None
    shifted: float = None
    findings: list = None
    flag: str = None

    def to_json(self):
        return asdict(self)

    @classmethod
    def from_json(cls, data):
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in (data or {}).items() if key in known}
        values.setdefault("name", "?")
        values.setdefault("cell", None)
        return cls(**values)

    def agrees(self):
        """Whether the notebook's figure and the grader's agree within TOLERANCE (one rule for the grader's
        flags and the class report). A figure on one side only disagrees; none on both agrees."""
        if self.claimed is None or self.clean is None:
            return (self.claimed is None) == (self.clean is None)
        return abs(self.claimed - self.clean) <= TOLERANCE.get(self.kind, TOLERANCE["accuracy"])

    def shown(self, key):
        """One of the check's figures as the feedback and the report show it ("—" when there is none)."""
        value = getattr(self, key)
        return "—" if value is None else figure(value, self.kind)


def figure(value, kind):
    """An accuracy as a percentage, a gain (a difference of accuracies) as signed points."""
    if value is None:
        return "not measured"
    return f"{value * 100:+.1f} points" if kind == "gain" else f"{value:.1%}"
