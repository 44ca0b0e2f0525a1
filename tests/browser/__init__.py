"""Helpers of the real-browser test (tests/test_browser.py): JupyterLab started from a student
release as a student starts it (lab.py), and a student's actions on a notebook page (notebook.py)."""
