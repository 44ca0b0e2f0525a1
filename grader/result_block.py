"""The one output a test cell keeps on a feedback page (grader/feedback.py): the verdict, the grader's own
figure of each check against its threshold, the reason, mnistlab.diagnose's findings, and which visible
line raised, if one did."""

import html
import re

from nbformat.v4 import new_output

from grader.hidden import ANSI, hidden_line_numbers
from grader.results import CheckResult, figure

# How IPython names a frame in a notebook cell: (execution count, line number)
FRAMES = (
    re.compile(r"Cell In\[(\d+)\], line (\d+)"),  # IPython >= 8.5
    re.compile(r"Input In \[(\d+)\], in <cell line: (\d+)>"),  # IPython 8.0 - 8.4
    re.compile(r"<ipython-input-(\d+)-[0-9a-f]+>[^\n]*\n(?:.*\n)*?-+> ?(\d+)"),  # IPython 7: "----> 3" marks the line
)


def visible_error(cell, error):
    """Which visible line of the test cell raised, as words, or None if the error came from hidden code.

    The traceback's frames that point into this cell ("Cell In[N], line L", or older IPython's
    "<ipython-input-N-...>" with "----> L") must all be on visible lines: an error raised inside
    hidden test code, or in a function defined there, says nothing a student may see. The words are
    the grader's: the error's name if it is one of Python's own, and the line as the master has it.
    Never the error's message: it was computed in a kernel that held the hidden tests, and a student's
    function called from a visible line can put anything into it (the running cell's source, encoded).
    """
    if error.get("ename") == "CellTimeoutError":  # nbgrader's own: the cell ran past the time limit
        return "the cell ran past the time limit (CellTimeoutError)"
    text = ANSI.sub("", "\n".join(error.get("traceback", [])))
    frames = sorted((m.start(), int(m[1]), int(m[2])) for frame in FRAMES for m in frame.finditer(text))
    frames = [(run, line) for _, run, line in frames]  # in the traceback's order: this cell's frame first
    if not frames:
        return None
    run = cell.get("execution_count") or frames[0][0]  # the In[N] of this cell
    lines = [line for n, line in frames if n == run]
    hidden = hidden_line_numbers(cell.source)
    if not lines or any(line in hidden for line in lines):
        return None
    source = cell.source.split("\n")
    line = lines[0]  # the cell's own frame: the visible line that was running
    name = error.get("ename") if error.get("ename") in PYTHON_ERRORS else "an error"
    code = source[line - 1].strip() if 0 < line <= len(source) else ""
    return f"{name} on line {line}: {code}" if code else f"{name} on line {line}"


PYTHON_ERRORS = {name for name, value in vars(__import__("builtins")).items()
                 if isinstance(value, type) and issubclass(value, BaseException)}


def check_text(check, kind=None):
    """One check (a CheckResult, or its JSON) in words: the grader's figure vs the threshold, and why it failed."""
    check = check if isinstance(check, CheckResult) else CheckResult.from_json(check)
    kind = kind or check.kind
    if kind == "test":  # a test cell decided from the values it handed in (grader/decide)
        words = "the grader's own check of the values this cell handed in"
        return words + (": passed." if check.passed else f": failed: {str(check.reason or '').rstrip('.')}.")
    threshold = figure(check.threshold, kind)
    if check.clean is None:
        words = f"{check.name}: not measured by the grader; the threshold is {threshold}"
    else:
        words = (f"{check.name}: {'a gain of ' if kind == 'gain' else ''}{figure(check.clean, kind)} measured by "
                 f"the grader on its own data; the threshold is {threshold}")
    if check.claimed is not None:
        words += f" (your notebook printed {figure(check.claimed, kind)})"
    if check.passed:
        return words + ". Passed."
    return words + (f". Failed: {check.reason.rstrip('.')}." if check.reason else ". Failed.")


def findings_of(dicts):
    """mnistlab.diagnose Findings rebuilt from the record's dicts (missing fields left empty)."""
    from mnistlab.diagnose import SEVERITIES, Finding, Findings

    findings = []
    for d in dicts:
        severity = d.get("severity") if d.get("severity") in SEVERITIES else "info"
        evidence = d.get("evidence") if isinstance(d.get("evidence"), dict) else {}
        causes = [c for c in d.get("causes") or [] if isinstance(c, dict) and "cause" in c
                  and isinstance(c.get("score"), (int, float))]  # the table prints each cause's score
        findings.append(Finding(name=str(d.get("name", "?")), severity=severity, evidence=evidence,
                                why=str(d.get("why") or ""), fix=str(d.get("fix") or ""), causes=causes))
    return Findings(findings)


def result_block(score, checks, error, note, had_error, kinds):
    """The one output a test cell keeps: a display_data with text/html and text/plain.

    score: (points, max points) from the gradebook, or None; checks: the CheckResults of this cell (or
    their JSON); error: visible_error() or None; note: the grader's cell note; had_error: whether
    the cell raised at all; kinds: {check name: "accuracy" | "gain" | "test"}.
    """
    checks = [c if isinstance(c, CheckResult) else CheckResult.from_json(c) for c in checks]
    if score is not None and score[1]:
        points, most = score
        verdict = "passed" if points >= most else "failed" if not points else "partly passed"
        verdict_text = f"{verdict} ({points:g} of {most:g} points)"
    else:
        verdict = "failed" if had_error or any(not c.passed for c in checks) else "passed"
        verdict_text = verdict
    plain, parts = [f"Result: {verdict_text}"], []
    for check in checks:
        kind = kinds.get(check.name, check.kind or "accuracy")
        plain.append("- " + check_text(check, kind))
        parts.append(f"<li>{html.escape(check_text(check, kind))}</li>")
    parts = [f"<ul style='margin:4px 0'>{''.join(parts)}</ul>"] if parts else []
    if error:
        plain.append(f"Error: {error}")
        parts.append(f"<p>Error: <code>{html.escape(error)}</code></p>")
    elif had_error and checks and all(c.passed for c in checks):
        words = "The cell raised an error in your notebook's kernel, but the grader's own check passed, and that counts."
        plain.append(words)
        parts.append(f"<p>{words}</p>")
    elif had_error:
        plain.append("A hidden test failed.")
        parts.append("<p>A hidden test failed.</p>")
    if note:
        plain.append(f"Note from the grader: {note}")
        parts.append(f"<p>Note from the grader: {html.escape(note)}</p>")
    for check in checks:
        if not check.passed and check.findings:
            findings = findings_of(check.findings)
            plain.append(f"What diagnose found about {check.name}:\n{findings}")
            parts.append(f"<p>What <code>mnistlab.diagnose</code> found about <code>{html.escape(str(check.name))}"
                         f"</code>:</p>{findings._repr_html_()}")
    color = {"passed": "#2e7d32", "failed": "#c62828"}.get(verdict, "#ef6c00")
    block = (f"<div style='border-left:4px solid {color};padding:2px 10px'>"
             f"<p><b style='color:{color}'>{html.escape(verdict_text)}</b></p>{''.join(parts)}</div>")
    return new_output("display_data", data={"text/html": block, "text/plain": "\n".join(plain)})
