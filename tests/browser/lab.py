"""JupyterLab for the browser test, started from a student release the way a student starts it
(`python start_lab.py`), on 127.0.0.1, a free port and a random token; stopped with its kernels.

The server's output goes to a log file, whose end is quoted when the server does not come up.
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# What the test suite sets for itself and a student's JupyterLab never has: MPLBACKEND=Agg would
# leave the notebooks without figures and MNISTLAB_QUIET without progress bars; the others are the
# grader's, or would point JupyterLab away from the release's own settings.
NOT_A_STUDENTS = ("MPLBACKEND", "MNISTLAB_QUIET", "MNISTLAB_DATA_SOURCE", "MNISTLAB_HAND_IN",
                  "NBGRADER_EXECUTION", "NBGRADER_VALIDATING", "JUPYTER_CONFIG_DIR",
                  "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "JPY_SESSION_NAME")

# urllib without the environment's proxies: the server is on 127.0.0.1.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children():
    """{parent pid: [child pids]} of every process now running (from /proc)."""
    tree = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _start_time(pid):
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def descendants(pid):
    """{pid: start time} of every process below `pid` (kernels run in sessions of their own, so
    a process group does not hold them: the parent links do)."""
    tree, found, todo = _children(), {}, [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found[child] = _start_time(child)
            todo.append(child)
    return found


class Lab:
    """`python start_lab.py --no-browser ...` in the release folder `folder`; the log and the
    runtime files (connection files, cookie secret) go to `workdir`."""

    def __init__(self, folder, workdir):
        self.folder, self.workdir = Path(folder), Path(workdir)
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.workdir / "jupyterlab.log"
        self.process = None

    def environment(self):
        env = {k: v for k, v in os.environ.items() if k not in NOT_A_STUDENTS}
        env["JUPYTER_RUNTIME_DIR"] = str(self.workdir / "runtime")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, timeout=120):
        command = [sys.executable, "start_lab.py", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
                   "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}"]
        if os.geteuid() == 0:  # containers and CI run as root; JupyterLab refuses that unless told
            command.append("--allow-root")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, cwd=self.folder, env=self.environment(), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with status {self.process.returncode}:\n{self.log_tail()}")
            if self.status("/api/status") == 200:
                return self
            time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer on {self.url} within {timeout} s:\n{self.log_tail()}")

    def page_url(self, path="lab"):
        return f"{self.url}/{path}?token={self.token}"

    def status(self, path, method="GET"):
        """The HTTP status of `path` on the server (0 when it does not answer)."""
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        try:
            with _direct.open(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except (urllib.error.URLError, OSError):
            return 0

    def log_tail(self, chars=6000):
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self):
        """Shut the server down with its kernels (its own shutdown first, then signals to every
        process it started, the kernels included)."""
        if self.process is None or self.process.poll() is not None:
            return
        below = descendants(self.process.pid)
        self.status("/api/shutdown", method="POST")  # shuts down the kernels, then the server
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        below.update(descendants(self.process.pid))
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            alive = [pid for pid, start in below.items() if start is not None and _start_time(pid) == start]
            if self.process.poll() is None:
                self.process.send_signal(sig)
            for pid in alive:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and (self.process.poll() is None or any(
                    _start_time(pid) == below[pid] for pid in alive)):
                time.sleep(0.2)
        self.process.wait(timeout=5)
