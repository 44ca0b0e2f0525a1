"""Start the student's Jupyter kernel in a jail: `python -P -m grader.jail CONFIG -f CONNECTION_FILE`.

nbgrader runs the student's notebook in a kernel it launches through a kernel spec; the grader's
sandbox (grader/sandbox.py) points the spec "python3" at this module. The sandbox already took the
network away and made every file system read-only except the scratch course; nbgrader itself still
sees all of them. The kernel, once jailed, is guaranteed:

  1. its own PID namespace: the kernel is process 1 there. It cannot see, signal or trace any other
     process (other students' kernels, nbgrader), and when it ends every process it started ends
     with it (a daemon or a fork bomb cannot outlive the notebook and change files after grading);
  2. a root file system built from an allowlist, and nothing else (`build_root`): /usr and the /bin,
     /lib* links as on the host; the Python installation (the venv and the Python it was made from)
     and the mnistlab package folder, the grader's data folder and the Jupyter connection file,
     read-only; a minimal /etc (a passwd naming only root, the kernel's user and nobody; the dynamic
     linker's cache, the time zone, fonts, certificates); the scratch course's kept folders (the
     notebook's folder in autograded/, home/, hand-in/: its own, read-write); a fresh /proc of its
     PID namespace with /proc/sys read-only; a /dev of null, zero, full, random, urandom and the
     fd links; a private /dev/shm and /tmp of SHM_SIZE and TMP_SIZE, gone with the kernel. Everything
     else on the machine is absent: other checkouts, the repository (.git, source/, tests/), the
     gradebooks, the course folder, /etc/shadow, /run, /sys, and every UNIX socket of the host
     (a socket in the file system reaches past the network namespace);
  3. a user of its own when the grader is root (`kernel_uid`: a uid per kernel from KERNEL_UIDS, no
     groups), owning only the kept folders (handed back to the grader when the kernel ends), with
     at most MAX_TASKS processes and threads (RLIMIT_NPROC, which Linux counts per uid, threads
     included, and never enforces for uid 0); no capabilities, no way to gain any (no_new_privs,
     an empty bounding set); then the real kernel (`ipykernel_launcher`) replaces this program.

When the grader is not root, the sandbox runs it in a user namespace that maps only the grader's
own uid: the jail is built the same way there, but the kernel keeps that uid (there is no other to
switch to), so its thread limit also counts nbgrader's threads. If any step fails, the kernel still
runs, under the unprivileged uid and without capabilities, and the report starts with
"NOT JAILED" and says which step failed.

CONFIG is a JSON file: {"scratch": path, "keep": [names inside scratch the kernel may use],
"read_only": [folders the kernel runs on or reads], "hide": [paths that must stay out of sight even
inside those]}. What was done goes to standard error (nbgrader's log) as one line "GRADER-JAIL
{json}", which the grader copies into the record's sandbox report; the kernel's own standard output
and error then go to /dev/null (what the notebook prints reaches nbgrader through Jupyter's
messages, not through these).
"""

import ctypes
import json
import os
import platform
import resource
import signal
import sys
from pathlib import Path

from grader.linux import (MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT, KEEP,
                          CLONE_NEWNS, die_with_parent, drop_bounding_set, drop_capabilities, libc_call, mount_points)

CLONE_NEWPID = 0x20000000
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

KERNEL_UIDS = 1_600_000_000  # kernel uid = this + the jail's pid (unique while the kernel lives; pid_max <= 2**22)
MAX_TASKS = 512  # processes + threads of the kernel's uid (an honest kernel: ~10, ~30 with a 4-worker DataLoader)
SHM_SIZE = "256m"  # the kernel's private /dev/shm (PyTorch's shared-memory tensors, DataLoader workers)
TMP_SIZE = "256m"  # its private /tmp
USER = "student"  # the kernel's user name in its /etc/passwd

SYSTEM = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")  # bound (or linked, as on the host) read-only
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "fonts", "ssl/certs",
       "ssl/openssl.cnf", "pki/tls/certs")  # what Python, PyTorch and matplotlib read of /etc (besides what is written)
DEVICES = ("null", "zero", "full", "random", "urandom")


def mount(source, target, fstype, flags, options=None):
    libc_call("mount", source and str(source).encode(), str(target).encode(), fstype and fstype.encode(),
              ctypes.c_ulong(flags), options and options.encode())


# --- the root file system -----------------------------------------------------------------------

def place(root, path, like):
    """The mount point for `like` at `path` inside `root`: an empty folder, or an empty file for a file."""
    target = Path(root + path)
    if os.path.isdir(like):
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(exist_ok=True)
    return target


def bind(root, source, path=None, writable=False):
    """Show `source` at `path` (default: the same path) inside `root`; read-only unless `writable`.

    The remount keeps the flags the source's mount has (in a user namespace they are locked)."""
    target = place(root, path or source, source)
    mount(source, target, None, MS_BIND | MS_REC)
    if not writable:
        options = [o for point, o in mount_points() if point == str(target)][-1]
        flags = MS_NOSUID | MS_NODEV | sum(KEEP.get(option, 0) for option in options)
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)


def tmpfs(root, path, options, flags=MS_NOSUID | MS_NODEV):
    target = place(root, path, "/")
    mount("tmpfs", target, "tmpfs", flags, options)
    return target


def system(root):
    """/usr read-only, and /bin, /lib... as on the host: links where the host has links, else read-only.
    Returns the paths it made."""
    made = []
    for host in ["/" + name for name in SYSTEM]:
        if os.path.islink(host):
            os.symlink(os.readlink(host), root + host)
        elif os.path.isdir(host):
            bind(root, host)
        else:
            continue
        made.append(host)
    return made


def etc(root, uid, gid):
    """A minimal /etc: users, groups, hosts and name lookup written here; the rest of ETC read-only from the host."""
    folder = Path(root, "etc")
    folder.mkdir()
    home = os.environ.get("HOME", "/")
    (folder / "passwd").write_text(f"root:x:0:0:root:/root:/usr/sbin/nologin\n{USER}:x:{uid}:{gid}:{USER}:{home}:/usr/sbin/nologin\n"
                                   "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    (folder / "group").write_text(f"root:x:0:\n{USER}:x:{gid}:\nnogroup:x:65534:\n")
    (folder / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")
    (folder / "nsswitch.conf").write_text("passwd: files\ngroup: files\nshadow: files\nhosts: files\n")
    for name in ETC:
        host = "/etc/" + name
        if os.path.islink(host):
            Path(root + host).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(host), root + host)
        elif os.path.exists(host):
            bind(root, host)


def devices(root):
    """A /dev of DEVICES (bound from the host's), the usual links, and a private, size-limited /dev/shm."""
    dev = tmpfs(root, "/dev", "size=64k,mode=0755", MS_NOSUID)
    for name in DEVICES:
        bind(root, f"/dev/{name}", writable=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, dev / name)
    tmpfs(root, "/dev/shm", f"size={SHM_SIZE},mode=1777", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(None, dev, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID, "size=64k,mode=0755")


def proc(root):
    """A fresh /proc of this PID namespace, with /proc/sys read-only and /proc/sysrq-trigger covered."""
    target = place(root, "/proc", "/")
    mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(target / "sys", target / "sys", None, MS_BIND | MS_REC)
    mount(None, target / "sys", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if (target / "sysrq-trigger").exists():
        mount("/dev/null", target / "sysrq-trigger", None, MS_BIND)


def outermost(paths):
    """`paths` without those inside another one of them, in order (a parent is mounted before its children)."""
    kept = []
    for path in sorted(set(paths), key=lambda p: p.split(os.sep)):
        if not any(path == k or path.startswith(k + os.sep) for k in kept):
            kept.append(path)
    return kept


def build_root(root, config, connection_file, uid, gid):
    """Build the kernel's root file system in `root` (step 2 of the module docstring). Returns the paths
    it shows the kernel read-only (the system's first) and read-write."""
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    shown = system(root)
    etc(root, uid, gid)
    devices(root)
    tmpfs(root, "/tmp", f"size={TMP_SIZE},mode=1777")
    proc(root)
    writable = [os.path.join(config["scratch"], name) for name in config["keep"]]
    needed = [p for p in config.get("read_only", []) if p and os.path.exists(p)]
    needed += [connection_file] if not any(connection_file.startswith(w + os.sep) for w in writable) else []
    paths = {os.path.abspath(p) for p in needed} | {os.path.realpath(p) for p in needed}
    read_only = [p for p in outermost(paths) if not any(p == f"/{s}" or p.startswith(f"/{s}/") for s in SYSTEM)]
    for path in read_only:
        bind(root, os.path.realpath(path), path)
    for path in writable:
        os.makedirs(path, exist_ok=True)
        bind(root, path, writable=True)
    for path in config.get("hide", []):  # only what the allowlist would show: inside a folder shown read-only
        if os.path.lexists(root + path) and not os.path.ismount(root + path):
            cover(root + path)
    return shown + read_only, writable


def cover(path):
    """Make `path` look empty: an empty read-only tmpfs over a folder, /dev/null over a file."""
    if os.path.isdir(path):
        mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")
    else:
        mount("/dev/null", path, None, MS_BIND)


def enter(root):
    """Make `root` this process's / (read-only from now on) with pivot_root, the old root detached (gone from
    this mount namespace); chroot where the system call's number is not known here (the old root then stays
    mounted below, out of reach: without capabilities there is no second chroot)."""
    os.chdir(root)
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        libc_call("chroot", b".")
    else:
        os.mkdir(".old-root")
        if ctypes.CDLL(None, use_errno=True).syscall(number, b".", b".old-root") != 0:
            raise OSError(ctypes.get_errno(), f"pivot_root: {os.strerror(ctypes.get_errno())}")
        libc_call("umount2", b"/.old-root", MNT_DETACH)
        os.rmdir("/.old-root")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    os.chdir("/")


# --- the user -----------------------------------------------------------------------------------

def kernel_uid():
    """The kernel's own uid (and gid): KERNEL_UIDS + this process's pid, when the grader is root; else None.

    Kernels graded at the same time get different uids, so one cannot use up another's RLIMIT_NPROC;
    a pid (so a uid) is used again only after its kernel and every process it started are gone."""
    return KERNEL_UIDS + os.getpid() if os.getuid() == 0 else None


def hand_over(folders, uid, gid):
    """Make `folders` and everything in them owned by uid:gid (links themselves, never what they point to)."""
    for folder in folders:
        if not os.path.isdir(folder) or os.path.islink(folder):
            continue
        os.lchown(folder, uid, gid)
        for parent, names, files in os.walk(folder):
            for name in names + files:
                os.lchown(os.path.join(parent, name), uid, gid)


def unprivileged(uid):
    """Become `uid` (if not None) with no groups, at most MAX_TASKS processes and threads, no capabilities.
    Returns the limit on processes and threads (lower than MAX_TASKS where the grader's own limit is)."""
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    limit = MAX_TASKS if hard == resource.RLIM_INFINITY else min(hard, MAX_TASKS)  # raising it needs a capability
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
    drop_bounding_set()
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    drop_capabilities()
    PR_SET_PDEATHSIG = 1  # a new uid clears the parent-death signal: ask for it again
    libc_call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return limit


# --- putting it together --------------------------------------------------------------------------

def wait_for(pid, folders):
    """In the jail's first process: wait for the kernel, hand `folders` back to the grader, exit with its status.

    nbgrader's interrupts (SIGINT to the process group) reach the kernel directly, so this process ignores them.
    A kernel that does not exit after its shutdown request (an ipykernel hang, about 1 kernel in 30 here, plain
    nbgrader's too) is ended by jupyter_client with SIGTERM to this process: it then kills the kernel (process 1 of
    its namespace ignores the signals it has no handler for) and still hands the folders back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    _, status = os.waitpid(pid, 0)  # (waits on after the handler: PEP 475)
    hand_over(folders, os.getuid(), os.getgid())  # the kernel's PID namespace is empty now: nothing races this
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 1)


def jail(config, connection_file, uid):
    """Steps 1 and 2 of the module docstring (the caller does 3). Forks: the first process waits (and hands
    the kept folders back if the kernel gets a uid of its own), the returning one becomes the kernel.
    Returns what was done, in words; raises OSError if a step failed."""
    try:
        libc_call("unshare", CLONE_NEWPID)
        failed = None
    except OSError as error:
        failed = error
    pid = os.fork()  # the child is process 1 of the new PID namespace: it becomes the kernel
    if pid:  # (forks even without the namespace: someone must hand the kept folders back)
        wait_for(pid, [os.path.join(config["scratch"], name) for name in config["keep"]] if uid is not None else [])
    die_with_parent()
    if failed:
        raise failed
    done = ["own PID namespace"]
    libc_call("unshare", CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here leaks out
    root = os.path.realpath(os.path.join(config["scratch"], "grader", "root"))
    os.makedirs(root, exist_ok=True)
    read_only, writable = build_root(root, config, connection_file, uid or os.getuid(), uid or os.getgid())
    enter(root)
    done.append(f"a root of its own, nothing else of the machine: read-only {', '.join(read_only)}, a minimal /etc; "
                f"read-write {', '.join(writable)}; a fresh /proc (/proc/sys read-only); /dev: {', '.join(DEVICES)}; "
                f"private /dev/shm and /tmp ({SHM_SIZE}, {TMP_SIZE})")
    return "jailed: " + "; ".join(done)


def main(argv):
    config_file, kernel_args = argv[0], argv[1:]
    config = json.loads(Path(config_file).read_text())
    connection_file = os.path.abspath(kernel_args[kernel_args.index("-f") + 1]) if "-f" in kernel_args else ""
    die_with_parent()  # if nbgrader's process is killed (e.g. with its worker), the kernel goes too
    os.umask(0o022)
    cwd = os.getcwd()
    uid = kernel_uid()
    done = {}
    try:
        if uid is not None:
            hand_over([os.path.join(config["scratch"], name) for name in config["keep"]], uid, uid)
        done["kernel"] = jail(config, connection_file, uid)
    except Exception as error:  # the kernel runs anyway, unprivileged, and every record says so
        done["kernel"] = (f"NOT JAILED ({type(error).__name__}: {error}): the student's code may see more of this "
                          "machine than the jail allows")
    try:
        limit = unprivileged(uid)
    except OSError as error:
        raise SystemExit(f"cannot start the kernel unprivileged: {error}") from None
    done["user"] = (f"uid {uid}, no groups" if uid is not None else
                    f"the grader's own uid {os.getuid()} (the grader is not root)") + ", no capabilities"
    done["tasks"] = f"at most {limit} processes and threads"
    os.write(2, f"GRADER-JAIL {json.dumps(done)}\n".encode())
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os.chdir(cwd)  # the same folder, now in the kernel's root
    os.environ.update(USER=USER, LOGNAME=USER)
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *kernel_args])


if __name__ == "__main__":
    main(sys.argv[1:])
