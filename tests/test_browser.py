"""A student's path through the course in a real browser.

Playwright drives Debian's chromium on JupyterLab, started from a student release
(`grader.release.build`, in a temporary folder) with the release's own `start_lab.py`, on
127.0.0.1 with a random token. The student opens the released 01-softmax notebook and:

1. Run All on the blank notebook stops at the first exercise: its test cell shows
   NotImplementedError and no later cell ran;
2. Validate reports the failing test cells;
3. pastes the reference answers (the solution cells of solutions/01-softmax, without nbgrader's
   markers) into the answer cells through the clipboard: select the cell, Enter, Ctrl+A, Ctrl+V
   (again, as a student would, if the editor does not show the whole answer: a key pressed while
   the editor is still being set up can be lost);
4. Run All runs to the end: progress bars render as widgets (never "Error displaying widget"),
   every figure of the reference solution is drawn, no cell fails;
5. saves: the file holds the pasted answers and the widget state; Validate says Success;
6. closes the notebook (shutting its kernel down) and reopens it: the progress bars render from
   the saved widget state.

Also: the instructor's nbgrader panels (formgrader, create assignment, course list, assignment
list, the Nbgrader menu) are absent, in the page and on the server, while Validate is there.

Screenshots of every step go to build/browser/ (with JupyterLab's log). The test skips only where
playwright or chromium is not installed, and says which command installs it.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "build" / "browser"
ASSIGNMENT = "01-softmax"
CHROMIUM = os.environ.get("MNISTLAB_CHROMIUM", "/usr/bin/chromium")
# Chromium in a container, on a closed network: no sandbox (root), no GPU, and none of its own
# background connections (which this network refuses, and which would only slow it down).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-proxy-server", "--disable-dev-shm-usage"]
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
INSTRUCTOR_ONLY = ("Formgrader", "Create Assignment", "Course List", "Assignment List", "Nbgrader")

try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None

if sync_playwright is None:
    pytest.skip("the browser test needs Playwright: .venv/bin/pip install playwright "
                "(it drives Debian's chromium: apt-get install -y chromium)", allow_module_level=True)
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"the browser test needs Debian's chromium at {CHROMIUM}: apt-get install -y chromium "
                "(or set MNISTLAB_CHROMIUM to another chromium)", allow_module_level=True)

from browser.lab import Lab  # noqa: E402
from browser.notebook import NUMBERED, Student  # noqa: E402


# -- the course's view: where the answers are, which cells draw figures or bars -----------------
def read(path):
    return json.loads(Path(path).read_text())


def nbgrader(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def answer(cell):
    """A reference solution cell's text as a student would type it: without nbgrader's markers."""
    return "\n".join(line for line in source(cell).splitlines() if line.strip() not in MARKERS)


def reference_answers(student, solution):
    """{index in the student notebook: answer text} for every answer cell, matched to the reference
    solution by cell id and nbgrader grade_id."""
    by_id = {(c.get("id"), nbgrader(c).get("grade_id")): c for c in solution["cells"]}
    answers = {}
    for index, cell in enumerate(student["cells"]):
        if nbgrader(cell).get("solution"):
            key = (cell.get("id"), nbgrader(cell).get("grade_id"))
            assert key in by_id, f"answer cell {key} of the student notebook is not in the reference solution"
            answers[index] = answer(by_id[key])
    return answers


def reference_outputs(solution, kind):
    """Indices of the reference solution's cells with a figure (kind "figure": a PNG, or matplotlib's
    '<Figure ...>' where the solution ran without one; a PNG in the browser) or a widget ("widget":
    a tqdm bar)."""
    found = []
    for index, cell in enumerate(solution["cells"]):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if kind == "widget" and "application/vnd.jupyter.widget-view+json" in data:
                found.append(index)
                break
            if kind == "figure" and ("image/png" in data or "".join(data.get("text/plain", "")).startswith("<Figure")):
                found.append(index)
                break
    return found


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def release_folder(tmp_path_factory):
    """What students receive: `python -m grader release`, into a temporary folder."""
    from grader import release

    return release.build(course=ROOT, to=tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def lab(release_folder, tmp_path_factory):
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    server = Lab(release_folder, tmp_path_factory.mktemp("jupyterlab"))
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.copy(server.log, SHOTS / "jupyterlab.log")


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def student(browser, lab):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.url)
    context.set_default_timeout(30_000)
    try:
        yield Student(context.new_page(), lab, SHOTS)
    finally:
        context.close()


# -- the tests -----------------------------------------------------------------------------------
def test_only_the_students_nbgrader_parts(student, lab, release_folder):
    """Validate is there; formgrader, create assignment, course list, assignment list and the
    Nbgrader menu are not (in the page, its command palette, or on the server)."""
    blank = read(release_folder / "notebooks" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    student.open(f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb", len(blank["cells"]))
    page = student.page
    assert page.locator(".jp-NotebookPanel .validate-button").count() == 1, "no Validate button in the notebook toolbar"

    menus = page.locator(".lm-MenuBar-itemLabel").all_text_contents()
    assert "Nbgrader" not in menus, f"the instructor's Nbgrader menu is in the menu bar: {menus}"
    tabs = page.evaluate("() => [...document.querySelectorAll('.lm-TabBar-tab')].map(t => t.getAttribute('title') || t.textContent)")
    text = student.body_text()
    for name in INSTRUCTOR_ONLY:
        assert not [t for t in tabs if name.lower() in (t or "").lower()], f"{name!r} is a tab of the student's JupyterLab: {tabs}"
        assert name not in text, f"{name!r} appears in the student's JupyterLab"
    student.shot("opened")

    page.keyboard.press("Control+Shift+c")  # the command palette: no nbgrader commands but Validate's
    search = page.locator(".lm-CommandPalette-input")
    search.wait_for()
    for name in ("formgrader", "create assignment", "assignment list", "course list", "nbgrader"):
        search.fill(name)
        page.wait_for_timeout(300)
        items = page.locator(".lm-CommandPalette-item").all_text_contents()
        assert not items, f"the command palette offers {items} for {name!r}"
    page.keyboard.press("Escape")

    for path in ("/formgrader", "/formgrader/api/status", "/formgraders", "/assignments", "/courses"):
        assert lab.status(path) == 404, f"the server answers {path} (an instructor's nbgrader extension is on)"
    assert lab.status("/nbgrader_version?version=0") == 200, "Validate's server extension is off"


@pytest.mark.timeout(900)
def test_student_path(student, release_folder):
    """Run All stops at the first exercise; Validate fails; the pasted reference answers run to the
    end with progress bars and figures; Validate says Success; reopened, the bars are still there."""
    path = release_folder / "notebooks" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    blank, solution = read(path), read(ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    answers = reference_answers(blank, solution)
    figures, bars = reference_outputs(solution, "figure"), reference_outputs(solution, "widget")
    assert answers and figures and bars, "the reference solution has no answers, figures or progress bars to check"
    first_answer = min(i for i in answers if blank["cells"][i]["cell_type"] == "code")
    first_test = next(i for i, c in enumerate(blank["cells"]) if i > first_answer and nbgrader(c).get("grade")
                      and c["cell_type"] == "code")

    # 1. Run All on the blank notebook stops at the first exercise.
    student.open(f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb", len(blank["cells"]))
    student.dismiss_news()
    student.run_all(timeout=180)
    cells = student.cells()
    student.shot("blank-run-all-stops", cell=first_test)
    assert "NotImplementedError" in cells[first_test]["output"], (
        f"Run All on the blank notebook: the first exercise's test (cell {first_test}) shows "
        f"{cells[first_test]['output'][-500:]!r}, not NotImplementedError")
    for index, cell in enumerate(cells[:first_test]):
        if cell["code"]:
            assert NUMBERED.match(cell["prompt"]), f"cell {index}, before the first exercise, did not run: {cell['prompt']}"
            assert "Error" not in cell["output"], f"cell {index}, before the first exercise, failed: {cell['output'][-500:]}"
    ran_after = [i for i, cell in enumerate(cells) if i > first_test and cell["code"] and cell["prompt"] != "[ ]:"]
    assert not ran_after, f"cells {ran_after} ran after the first exercise failed"

    # 2. Validate reports the failures of the blank notebook.
    classes, text = student.validate(timeout=300)
    student.shot("blank-validate")
    assert "validation-failed" in classes and "The following cell failed" in text, f"Validate on the blank notebook: {text[:1000]!r}"
    assert "NotImplementedError" in text and source(blank["cells"][first_test]).splitlines()[0] in text, (
        f"Validate on the blank notebook does not report the first exercise's test: {text[:1000]!r}")
    student.close_dialog()

    # 3. Paste the reference answers into the answer cells.
    for index, text in answers.items():
        student.paste_into(index, text)
    student.shot("answers-pasted", cell=first_answer)

    # 4. Run All runs to the end, with progress bars and figures.
    student.run_all(timeout=420)
    cells = student.cells()
    student.shot("answered-progress-bar", cell=bars[0])
    student.shot("answered-figure", cell=figures[-1])
    failed = {i: c["output"][-800:] for i, c in enumerate(cells) if c["code"] and not NUMBERED.match(c["prompt"])}
    assert not failed, f"Run All on the answered notebook stopped; cells that did not run: {sorted(failed)}; " \
                       f"last outputs: {[c['output'][-800:] for c in cells if 'Error' in c['output']]}"
    assert "Error displaying widget" not in student.body_text(), "a widget did not render (Error displaying widget)"
    for index in bars:
        assert cells[index]["bars"], f"cell {index} shows no progress bar widget: {cells[index]['output'][-300:]!r}"
        assert "100%" in cells[index]["output"], f"cell {index}'s progress bar did not reach 100%: {cells[index]['output'][-300:]!r}"
    for index in figures:
        assert cells[index]["images"], f"cell {index} draws no figure: {cells[index]['output'][-300:]!r}"
    with_bars = {i: c["bars"] for i, c in enumerate(cells) if c["bars"]}

    # 5. Save: the file holds the pasted answers and the widget state; Validate says Success.
    student.save()
    saved = read(path)
    for index, text in answers.items():
        assert source(saved["cells"][index]) == text, f"cell {index} was saved as {source(saved['cells'][index])[:300]!r}"
    errors = [i for i, c in enumerate(saved["cells"]) for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"the saved notebook has errors in cells {errors}"
    state = saved["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    assert any(m.get("model_name") == "FloatProgressModel" for m in state.values()), \
        "the saved notebook holds no progress bar state (the widget manager's saveState is off)"
    classes, text = student.validate(timeout=420)
    student.shot("answered-validate")
    assert "validation-success" in classes and "Success" in text, f"Validate on the answered notebook: {text[:2000]!r}"
    student.close_dialog()

    # 6. Close (its kernel shut down), reopen: the bars render from the saved widget state.
    student.close_and_shut_down()
    student.open_from_file_browser(path.name, len(blank["cells"]))
    student.page.wait_for_function(  # the outputs' widgets are restored (or fail to be)
        "n => document.querySelectorAll('.jp-OutputArea-output .widget-hprogress').length >= n"
        " || document.body.textContent.includes('Error displaying widget')",
        arg=sum(with_bars.values()), timeout=60_000)
    student.shot("reopened-progress-bar", cell=bars[0])
    assert "Error displaying widget" not in student.body_text(), "a reopened notebook's widget did not render"
    reopened = student.cells()
    assert {i: c["bars"] for i, c in enumerate(reopened) if c["bars"]} == with_bars, "the reopened notebook lost progress bars"
    assert all("100%" in reopened[i]["output"] for i in bars), "the reopened progress bars are not the saved ones"
