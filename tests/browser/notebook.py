"""A student's actions on a JupyterLab page, through the UI (menus, toolbar, keyboard, clipboard),
and what the page then shows, read from the DOM.

JupyterLab 4 renders a notebook's cells progressively (`wait_rendered` waits for all of them) and
skips painting those off screen (`content-visibility`), so the page is read with textContent,
never innerText.
"""

import itertools
import re
import time
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout

# One dict per cell of the open notebook, in order: what the student sees of it.
READ_CELLS = """() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell')].map(c => ({
    code: c.classList.contains('jp-CodeCell'),
    prompt: (c.querySelector('.jp-InputPrompt')?.textContent || '').trim(),
    output: [...c.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent).join('\\n'),
    errors: c.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').length,
    images: c.querySelectorAll('.jp-OutputArea-output img[src^="data:image/png"]').length,
    bars: c.querySelectorAll('.jp-OutputArea-output .widget-hprogress').length,
}))"""

NUMBERED = re.compile(r"^\[\d+\]:$")


class Student:
    """One browser page on JupyterLab; `shot(name)` saves numbered screenshots in `shots`."""

    steps = itertools.count(1)  # screenshots are numbered across all pages, in the order taken

    def __init__(self, page, lab, shots):
        self.page, self.lab, self.shots = page, lab, Path(shots)
        self.shots.mkdir(parents=True, exist_ok=True)

    # -- looking -------------------------------------------------------------------------------
    def shot(self, name, cell=None):
        """Screenshot of the page (scrolled to cell `cell` first, when given)."""
        if cell is not None:
            self.cell(cell).evaluate("c => c.scrollIntoView({block: 'center'})")
            time.sleep(0.5)  # the scrolled-to cells are painted
        path = self.shots / f"{next(self.steps):02d}-{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def cell(self, index):
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(index)

    def cells(self):
        return self.page.evaluate(READ_CELLS)

    def body_text(self):
        return self.page.evaluate("() => document.body.textContent")

    def dismiss_news(self):
        """JupyterLab may ask whether to fetch Jupyter news: a student answers No."""
        toast = self.page.locator(".jp-toast-message, .Toastify__toast", has_text="Jupyter news")
        if toast.count():
            toast.first.get_by_role("button", name="No", exact=True).click()

    # -- opening ---------------------------------------------------------------------------------
    def open(self, path, cells, timeout=90):
        """Open the notebook at `path` (relative to the server's root) by its URL and wait until
        all its `cells` are on the page and its kernel is idle."""
        self.page.goto(self.lab.page_url(f"lab/tree/{path}"))
        self.wait_rendered(cells, timeout)
        self.wait_idle(timeout)

    def open_from_file_browser(self, name, cells, timeout=90):
        """Double-click `name` in the file browser (as a student reopens a notebook)."""
        self.page.locator(".jp-DirListing-item", has=self.page.locator(".jp-DirListing-itemText", has_text=name)).first.dblclick()
        self.wait_rendered(cells, timeout)
        self.wait_idle(timeout)

    def wait_rendered(self, cells, timeout=90):
        self.page.wait_for_function(
            "n => document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell').length === n",
            arg=cells, timeout=timeout * 1000)

    def wait_idle(self, timeout):
        """Until the kernel is idle and no cell is waiting to run ([*])."""
        self.page.wait_for_function(
            """() => {
                const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
                const kernel = panel && panel.querySelector('.jp-Notebook-ExecutionIndicator');
                return kernel && kernel.getAttribute('data-status') === 'idle'
                    && ![...panel.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'));
            }""", timeout=timeout * 1000, polling=500)

    # -- doing -----------------------------------------------------------------------------------
    def menu(self, menu, command):
        """Open the menu bar's `menu` and click the item that runs `command` (a JupyterLab command id)."""
        self.page.locator(".lm-MenuBar-item", has=self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$"))).click()
        item = self.page.locator(f".lm-Menu-item[data-command='{command}']")
        item.wait_for()
        item.click()

    def run_all(self, timeout):
        """Run > Run All Cells, then wait until the run is over (finished, or stopped by an error)."""
        self.menu("Run", "runmenu:run-all")
        self.page.wait_for_function(  # the run has started: some cell is queued or running
            "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputPrompt')].some(p => p.textContent.includes('*'))",
            timeout=30_000, polling=100)
        self.wait_idle(timeout)

    def paste_into(self, index, text):
        """Select cell `index`, enter its editor (Enter), select all and paste `text` from the
        clipboard (Ctrl+A, Ctrl+V), and leave the editor (Escape): a student pasting an answer."""
        cell = self.cell(index)
        cell.scroll_into_view_if_needed()
        cell.locator(".jp-InputPrompt").first.click()  # selects the cell (command mode)
        self.page.keyboard.press("Enter")  # edit mode: the cell's editor has the focus
        editor = cell.locator(".cm-content")
        editor.wait_for()
        self.page.wait_for_function("e => e.contains(document.activeElement) || e === document.activeElement",
                                    arg=editor.element_handle(), timeout=10_000)
        self.page.evaluate("text => navigator.clipboard.writeText(text)", text)
        for _ in range(3):  # a key pressed while the editor is still being set up can be lost: paste again
            self.page.keyboard.press("Control+a")
            self.page.keyboard.press("Control+v")
            try:
                self.page.wait_for_function(
                    "([e, text]) => [...e.querySelectorAll('.cm-line')].map(l => l.textContent).join('\\n') === text",
                    arg=[editor.element_handle(), text], timeout=3_000, polling=100)
                break
            except PlaywrightTimeout:
                pass
        self.page.keyboard.press("Escape")

    def save(self):
        """File > Save Notebook, then wait until the tab no longer shows unsaved changes."""
        self.menu("File", "docmanager:save")
        self.page.wait_for_function(
            "() => !document.querySelector('.lm-TabBar-tab.jp-mod-current.jp-mod-dirty')", timeout=30_000)

    def validate(self, timeout):
        """Click the toolbar's Validate and return the dialog's (classes, text); the dialog is left
        open (for a screenshot): `close_dialog` closes it."""
        self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .validate-button").click()
        dialog = self.page.locator(".jp-Dialog")  # the results, or an error ("Validation failed")
        dialog.wait_for(timeout=timeout * 1000)
        found = dialog.locator("#validation-message")
        classes = found.get_attribute("class") if found.count() else ""
        return classes or "", dialog.text_content()

    def close_dialog(self):
        self.page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
        self.page.locator(".jp-Dialog").wait_for(state="detached")

    def close_and_shut_down(self):
        """File > Close and Shut Down Notebook, and confirm: the notebook's kernel is gone."""
        self.menu("File", "filemenu:close-and-cleanup")
        dialog = self.page.locator(".jp-Dialog")
        dialog.wait_for(timeout=10_000)
        dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
        self.page.wait_for_function("() => !document.querySelector('.jp-NotebookPanel')", timeout=30_000)
