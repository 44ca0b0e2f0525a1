"""What grading found, typed: one submission (SubmissionResult) and each clean check of it (CheckResult).

A worker returns a SubmissionResult (grader/execute.py); the coordinator writes it into the gradebook and, as
JSON, into autograded/<s>/<a>/.grader.json (grader/course.py: record, read_record); feedback, the class report
and the demo read it back from there. Each of its checks is a CheckResult: what the grader measured or
decided for one grade cell.

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

from dataclasses import asdict, dataclass, field, fields

# Notebook and grader measure the same model on the same data: only float noise may part them ("gain" retrains).
TOLERANCE = {"accuracy": 0.005, "gain": 0.02}


@dataclass
class CheckResult:
    name: str
    cell: str
    kind: str = None  # None only in a record written before checks had kinds (grader/feedback.py: check_kinds)
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


@dataclass
class SubmissionResult:
    """One submission's grading. The fields up to `graded_at` are its RECORD (.grader.json); the last three
    only travel from the worker to the coordinator, which writes them into the gradebook and autograded/."""
    student: str
    assignment: str
    status: str = "failed"  # "graded", or "failed": nothing could be graded (every automatic point 0), see reason
    reason: str = None  # why it failed, in words for the student and the instructor
    hash: str = None  # of the submitted files and the assignment's source: a re-run skips an unchanged submission
    cell_errors: dict = field(default_factory=dict)  # {grade id or cell: name of the error it raised}
    checks: list = field(default_factory=list)  # CheckResult of every clean check
    flags: list = field(default_factory=list)  # lines for a human: the submission is flagged
    cell_notes: dict = field(default_factory=dict)  # {grade id: the grader's note on that cell}
    sandbox: dict = field(default_factory=dict)  # what the sandbox did, in words (network, filesystem, jail)
    peak_mib: int = None  # peak memory of the submission's processes
    seconds: float = None  # its grading time in a worker (None: its worker was lost)
    score: float = None  # the gradebook's figures once recorded: total, most, the points that wait for a human,
    max_score: float = None
    manual_pending: float = 0
    auto_scores: dict = None  # and {"notebook/cell": automatic score}, to tell whether a gradebook holds them
    graded_at: str = None
    scores: dict = None  # worker only: nbgrader's scores per notebook (the clean verdict applied)
    files: dict = field(default_factory=dict)  # worker only: the autograded files {relative path: bytes}
    log_tail: str = ""  # worker only: the end of nbgrader's log

    def to_json(self):
        """The RECORD: every field but the worker-only ones, the checks as JSON."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("scores", "files", "log_tail")}
        data["checks"] = [c.to_json() for c in self.checks]
        return data

    @classmethod
    def from_json(cls, data):
        """A RECORD read back: known fields kept (an older record's missing ones get their defaults)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known and value is not None}
        values["checks"] = [CheckResult.from_json(c) for c in values.get("checks") or [] if isinstance(c, dict)]
        return cls(**values)


def figure(value, kind):
    """An accuracy as a percentage, a gain (a difference of accuracies) as signed points."""
    if value is None:
        return "not measured"
    return f"{value * 100:+.1f} points" if kind == "gain" else f"{value:.1%}"
