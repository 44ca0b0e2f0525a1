"""What must never reach a student, and how to find it: the hidden tests of the masters (their lines,
as patterns that survive re-spacing and terminal colours), redaction, and the last check of a page.
Used by grader/feedback.py."""

import html
import re

from grader import nbcell

BEGIN, END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"  # nbgrader's ClearHiddenTests delimiters
REDACTED = "[hidden test code removed]"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # terminal colour codes (IPython colours tracebacks)
MIN_SECRET = 12  # a line of hidden test code counts as a secret from this many non-space characters


class LeakError(RuntimeError):
    """A finished feedback page still contains hidden test code: it was not written."""


def hidden_line_numbers(source, begin=BEGIN, end=END):
    """The 1-based numbers of the lines of `source` inside hidden test regions, markers included.

    The same rule as nbgrader's ClearHiddenTests: a line containing `begin` opens a region, one
    containing `end` closes it. A region left open runs to the end of the cell (nbgrader would
    have refused it; here the safe side is to hide more).
    """
    hidden, inside = set(), False
    for number, line in enumerate(source.split("\n"), 1):
        if begin in line:
            inside = True
        if inside:
            hidden.add(number)
        if end in line:
            inside = False
    return hidden


def is_test_cell(cell):
    """An autograder test cell: a code cell that nbgrader grades (not a student's answer)."""
    return nbcell.is_test(cell)


def secret_lines(masters):
    """The lines of hidden test code in the master notebooks that are worth looking for.

    A line counts when it has at least MIN_SECRET non-space characters and appears nowhere outside
    the hidden regions (a line the students can see anyway is no secret). Returns them stripped,
    longest first (so a long line is redacted before a shorter one that it contains).
    """
    hidden, visible = set(), set()
    for nb in masters:
        for cell in nb.cells:
            numbers = hidden_line_numbers(cell.source)
            for number, line in enumerate(cell.source.split("\n"), 1):
                (hidden if number in numbers else visible).add(line.strip())
    secrets = {line for line in hidden - visible if len("".join(line.split())) >= MIN_SECRET}
    return sorted(secrets, key=lambda line: (-len(line), line))


def secret_patterns(secrets):
    """One regular expression per secret line that also matches it re-spaced (e.g. re-indented)."""
    return [re.compile(r"\s+".join(re.escape(word) for word in line.split())) for line in secrets]


def redact(text, patterns):
    if isinstance(text, list):  # nbformat allows multi-line strings as lists of lines
        text = "".join(text)
    plain = ANSI.sub("", text)
    if any(pattern.search(plain) for pattern in patterns):  # colour codes can split a line: redact the plain text
        text = plain
    for pattern in patterns:
        text = pattern.sub(REDACTED, text)
    return text


TAG = re.compile(r"<[^>]*>")


def assert_no_secrets(page, patterns, where):
    """Raise LeakError if a line of hidden test code is in the HTML `page` (as markup or as text)."""
    texts = (html.unescape(page), html.unescape(TAG.sub("", page)))
    for pattern in patterns:
        for text in texts:
            found = pattern.search(text)
            if found:
                raise LeakError(f"feedback for {where} would show hidden test code ({found[0][:80]!r}); "
                                f"the page was not written. Look at the autograded notebook, or leave it out.")
