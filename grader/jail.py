"""Start the student's Jupyter kernel in a jail: `python -m grader.jail CONFIG -f CONNECTION_FILE`.

nbgrader runs the student's notebook in a kernel it launches through a kernel spec; the grader's
sandbox (grader/sandbox.py) points the spec "python3" at this module. The sandbox already took the
network away and made every file system read-only except the scratch course. The jail goes further,
for the kernel only (nbgrader itself still needs to see everything):

  1. its own PID namespace: the kernel is process 1 there. It cannot see, signal or trace any other
     process (other students' kernels included), and when it ends every process it started ends
     with it (a daemon or a fork bomb cannot outlive the notebook and change files after grading);
  2. its own mount namespace, where the places it must not read are covered by empty, read-only file
     systems: the scratch course's gradebook, logs and source/ (the hidden tests), the real course
     folder (everyone's submissions and grades), the other scratch courses, and the course's source
     and solutions in this checkout, /run (the host's service sockets: a UNIX socket in the file
     system reaches past the network namespace); /proc/sys and /sys are read-only, and /dev/shm is
     its own, size-limited, gone with the kernel;
  3. no capabilities left (so it cannot undo 1 or 2), then the real kernel (`ipykernel_launcher`) replaces
     this program.

CONFIG is a JSON file: {"scratch": path, "keep": [names inside scratch the kernel may use],
"hide": [more paths], "cover_around": the folder (the temporary folder, or else the scratch course's
parent) whose contents are covered but for the scratch course}. What was done goes to standard error (nbgrader's log) as one line
"GRADER-JAIL {json}"; the kernel's own standard output and error then go to /dev/null (what the
notebook prints reaches nbgrader through Jupyter's messages, not through these).
"""

import ctypes
import json
import os
import signal
import sys
from pathlib import Path

from grader.sandbox import (CLONE_NEWNS, MS_BIND, MS_NODEV, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT, drop_capabilities,
                            libc_call, mount_points)

CLONE_NEWPID = 0x20000000
MS_NOEXEC = 8


def mount(source, target, fstype, flags, options=None):
    libc_call("mount", source and str(source).encode(), str(target).encode(), fstype and fstype.encode(),
              ctypes.c_ulong(flags), options and options.encode())


def cover(path):
    """Make `path` look empty: an empty read-only tmpfs over a folder, /dev/null over a file."""
    if os.path.isdir(path):
        mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")
    elif os.path.exists(path):
        mount("/dev/null", path, None, MS_BIND)


def cover_all_but(parent, keep):
    """Cover everything under `parent` except `keep` (a folder somewhere below it), which stays as it is.

    The trick: hold `keep` open, put a fresh tmpfs over `parent`, make the same path to an empty folder
    in it and bind the held folder there; then make the tmpfs read-only.
    """
    held = os.open(keep, os.O_PATH | os.O_DIRECTORY)
    mount("tmpfs", parent, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=16k,mode=0755")
    os.makedirs(keep)
    mount(f"/proc/self/fd/{held}", keep, None, MS_BIND | MS_REC)
    mount(None, parent, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=16k,mode=0755")
    os.close(held)


SOCKET_FOLDERS = ("/run",)  # where the host's services keep their sockets (PostgreSQL, D-Bus, Docker; /var/run links here)
SHM_SIZE = "256m"  # the kernel's private /dev/shm (PyTorch's shared-memory tensors, DataLoader workers)


def kernel_settings_read_only():
    """/proc/sys, /proc/sysrq-trigger and every file system under /sys read-only for the kernel: a process
    with uid 0 may otherwise open them for writing without any capability (e.g. a pipe in
    /proc/sys/kernel/core_pattern runs a program as the host's root on the next crash)."""
    mount("/proc/sys", "/proc/sys", None, MS_BIND | MS_REC)
    mount(None, "/proc/sys", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if os.path.exists("/proc/sysrq-trigger"):
        mount("/dev/null", "/proc/sysrq-trigger", None, MS_BIND)
    for point in [p for p, _ in mount_points() if p == "/sys" or p.startswith("/sys/")]:
        try:
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        except OSError:  # a mount that refuses the remount (e.g. one a parent namespace locked) is covered
            if point != "/sys":
                cover(point)


def jail(config):
    """Steps 1-3 of the module docstring, up to the exec. Returns what was done, in words."""
    from grader.sandbox import die_with_parent

    die_with_parent()  # if nbgrader's process is killed (e.g. with its worker), the kernel goes too
    scratch = config["scratch"]
    libc_call("unshare", CLONE_NEWNS | CLONE_NEWPID)
    pid = os.fork()  # the first child is process 1 of the new PID namespace: it becomes the kernel
    if pid:
        # The parent only waits and passes the exit status on; nbgrader's interrupts (SIGINT to the
        # process group) reach the kernel directly, so the parent ignores them.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) if os.waitstatus_to_exitcode(status) >= 0 else 1)
    die_with_parent()
    mount(None, "/", None, MS_REC | (1 << 18), None)  # MS_PRIVATE: nothing we do here leaks out
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # a /proc that shows only this namespace
    kernel_settings_read_only()
    # A /dev/shm of its own, size-limited: nothing written there outlives the kernel or reaches the host
    # (a channel between submissions), and it holds at most SHM_SIZE.
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={SHM_SIZE},mode=1777")
    for name in sorted(os.listdir(scratch)):
        if name not in config["keep"]:
            cover(os.path.join(scratch, name))
    cover_all_but(config.get("cover_around") or os.path.dirname(scratch), scratch)
    hidden = [p for p in config.get("hide", []) if os.path.exists(p) and not scratch.startswith(os.path.abspath(p) + os.sep)]
    for path in hidden:
        cover(path)
    for path in SOCKET_FOLDERS:  # a UNIX socket in the file system reaches past the network namespace
        cover(path)
    drop_capabilities()
    return {"kernel": "jailed: own PID namespace; gradebook, source, logs, course folder and other "
                      f"submissions hidden ({len(hidden)} more paths); /proc/sys and /sys read-only; "
                      f"a private /dev/shm of {SHM_SIZE}; the host's sockets in {', '.join(SOCKET_FOLDERS)} hidden"}


def main(argv):
    config_file, kernel_args = argv[0], argv[1:]
    config = json.loads(Path(config_file).read_text())
    try:
        done = jail(config)
    except OSError as error:  # e.g. no privileges for namespaces: say so, and run the kernel anyway,
        done = {"kernel": f"not jailed ({error})"}  # but never with the capabilities nbgrader's process kept
        try:
            drop_capabilities()
        except OSError as again:
            raise SystemExit(f"cannot start the kernel without capabilities: {again}") from None
    os.write(2, f"GRADER-JAIL {json.dumps(done)}\n".encode())
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os.chdir(os.getcwd())  # re-enter the working folder through the new mounts
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *kernel_args])


if __name__ == "__main__":
    main(sys.argv[1:])
