"""What diagnose returns: Finding (one problem, its evidence and its fix) and Findings, the list.

Shown in 01 (raw EMNIST letters), 02 (stuck at chance), 03 (a linear stack, overfitting) and 05
(the pitfalls): a Findings prints as a table, text in a terminal and HTML in Jupyter. The grader
rebuilds one from plain dicts for each student's feedback (grader/feedback.py). Skip is what a
detector raises when it cannot run on what it was given.
"""

import html
import json
import math
import textwrap
from dataclasses import asdict, dataclass, field

import torch

# error: this breaks training; warning: this costs accuracy; info: worth knowing
SEVERITIES = ("error", "warning", "info")


@dataclass
class Finding:
    """One problem found: what it is, how bad, the numbers measured, why it hurts, and the fix."""

    name: str  # short and stable, e.g. "output_activation": the grader can key on it
    severity: str  # "error", "warning" or "info"
    evidence: dict  # measured numbers, e.g. {"input_mean": 0.87, "input_std": 0.31}
    why: str  # what was seen and why it hurts, in words a student understands
    fix: str  # what to change
    causes: list = field(default_factory=list)  # ranked likely causes, best first: [{"cause": ..., "score": 0..1}]

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")


class Findings(list):
    """The list of Findings diagnose returns, worst first. Prints as a table (text or HTML).

    `.skipped` maps each detector that could not run to the reason (e.g. "needs data").
    """

    def __init__(self, findings=(), skipped=None):
        super().__init__(findings)
        self.skipped = dict(skipped or {})

    def names(self):
        return [finding.name for finding in self]

    def get(self, name):
        """The finding called `name`, or None."""
        return next((finding for finding in self if finding.name == name), None)

    def to_dicts(self):
        """Plain data: a list of dicts with keys name, severity, evidence, why, fix, causes."""
        return [_plain(asdict(finding)) for finding in self]

    def to_json(self, indent=None):
        """JSON text: {"findings": [...], "skipped": {detector: reason}}. NaN/inf become "nan"/"inf"."""
        return json.dumps({"findings": self.to_dicts(), "skipped": self.skipped}, indent=indent)

    def _summary(self):
        if not self:
            return "diagnose: no problems found"
        counts = [sum(f.severity == s for f in self) for s in SEVERITIES]
        counts = [f"{n} {s}{'s' if n != 1 and s != 'info' else ''}" for n, s in zip(counts, SEVERITIES)]
        return f"diagnose: {len(self)} finding{'s' * (len(self) != 1)} ({', '.join(counts)})"

    def __str__(self):
        lines = [self._summary()]
        for finding in self:
            lines.append(f"\n[{finding.severity.upper()}] {finding.name}")
            lines.append(_wrap("evidence: " + _format_evidence(finding.evidence)))
            lines.append(_wrap("why: " + finding.why))
            if finding.causes:
                ranked = "; ".join(f"{i}. {c['cause']} ({c['score']:.2f})" for i, c in enumerate(finding.causes, 1))
                lines.append(_wrap("likely causes: " + ranked))
            lines.append(_wrap("fix: " + finding.fix))
        if self.skipped:
            lines.append("\nnot checked: " + "; ".join(f"{name} ({reason})" for name, reason in self.skipped.items()))
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self):
        colors = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}
        rows = []
        for f in self:
            causes = ""
            if f.causes:
                items = "".join(f"<li>{html.escape(c['cause'])} ({c['score']:.2f})</li>" for c in f.causes)
                causes = f"<br><b>likely causes</b><ol style='margin:0'>{items}</ol>"
            evidence = "<br>".join(f"{html.escape(str(k))} = {html.escape(str(v))}" for k, v in f.evidence.items())
            rows.append(
                "<tr style='vertical-align:top'>"
                f"<td><span style='color:white;background:{colors[f.severity]};padding:1px 6px;border-radius:3px'>"
                f"{f.severity}</span></td>"
                f"<td><code>{html.escape(f.name)}</code></td>"
                f"<td style='text-align:left;white-space:nowrap'>{evidence}</td>"
                f"<td style='text-align:left'>{html.escape(f.why)}{causes}</td>"
                f"<td style='text-align:left'>{html.escape(f.fix)}</td></tr>"
            )
        table = ""
        if rows:
            columns = ("severity", "finding", "evidence", "why", "fix")
            head = "".join(f"<th style='text-align:left'>{h}</th>" for h in columns)
            table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        skipped = ""
        if self.skipped:
            items = "; ".join(f"<code>{html.escape(n)}</code> ({html.escape(r)})" for n, r in self.skipped.items())
            skipped = f"<p style='color:#666'>not checked: {items}</p>"
        return f"<p><b>{html.escape(self._summary())}</b></p>{table}{skipped}"


def _wrap(text):
    return textwrap.fill(text, width=100, initial_indent="  ", subsequent_indent="      ")


def _format_evidence(evidence):
    return ", ".join(f"{key}={value}" for key, value in evidence.items())


def _num(x, digits=4):
    """A plain Python number with `digits` significant digits (ints and bools stay ints)."""
    if isinstance(x, torch.Tensor):
        x = x.item()
    if isinstance(x, (bool, int)):
        return int(x)
    x = float(x)
    if not math.isfinite(x) or x == 0:
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def _plain(value):
    """JSON cannot hold NaN or infinity: write them as the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


class Skip(Exception):
    """Raised by a detector that cannot run on what it was given; the message says what it needs."""

