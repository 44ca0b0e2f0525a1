"""The Linux calls the grader's sandbox (grader/sandbox.py) and jail (grader/jail.py) are made of:
namespaces, mounts, capabilities, and a process that dies with its parent. Each is a thin wrapper over
libc or /proc that raises OSError with the errno when the kernel refuses."""

import ctypes
import fcntl
import os
import re
import signal
import socket
import struct
from pathlib import Path

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000



def libc_call(name, *args):
    """Call a libc function; raise OSError with its errno when it fails."""
    function = getattr(ctypes.CDLL(None, use_errno=True), name)
    if function(*args) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{name}: {os.strerror(error)}")


def new_namespaces(network=True):
    """Give this process its own mount (and network) namespace, as root or via a user namespace."""
    uid, gid, flags = os.getuid(), os.getgid(), CLONE_NEWNS | (CLONE_NEWNET if network else 0)
    if uid == 0:
        libc_call("unshare", flags)
    else:  # without root: a user namespace gives the capabilities to own the others
        libc_call("unshare", CLONE_NEWUSER | flags)
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")


def loopback_up():
    """The kernel and nbgrader talk over TCP on 127.0.0.1: bring the new namespace's `lo` up
    (what `ip link set lo up` does: read the interface flags, add IFF_UP, write them back)."""
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
KEEP = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": 1024, "nodiratime": 2048,
        "relatime": 1 << 21}


def read_only_except(scratch):
    """Make every file system read-only in this mount namespace, except the scratch course.

    /proc, /sys and /dev (devices, /dev/shm) stay as they are. Nothing propagates back to the host.
    """
    libc_call("mount", None, b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None)
    libc_call("mount", scratch.encode(), scratch.encode(), None, ctypes.c_ulong(MS_BIND), None)
    for point, options in mount_points():
        if point == scratch or point.split("/")[1] in ("proc", "sys", "dev"):
            continue
        flags = sum(KEEP.get(option, 0) for option in options)
        try:
            libc_call("mount", None, point.encode(), None, ctypes.c_ulong(MS_REMOUNT | MS_BIND | MS_RDONLY | flags), None)
        except OSError:
            if point == "/":
                raise


def mount_points():
    """[(mount point, its mount options)] of this mount namespace, from /proc/self/mountinfo."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        points.append((re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]), fields[5].split(",")))
    return points


def drop_bounding_set():
    """Empty the capability bounding set (what a later execve() could give back); needs CAP_SETPCAP,
    so grader/jail.py calls it before it changes to the kernel's uid."""
    PR_CAPBSET_DROP = 24
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in range(64):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            break  # past the last capability this kernel knows (or already dropped)


def drop_capabilities():
    """Give up every capability, for good: the student's code, even running as root, can no longer
    mount (undo the read-only file systems), enter other namespaces or bypass file permissions."""
    PR_SET_NO_NEW_PRIVS = 38
    drop_bounding_set()
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    nothing = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    libc_call("capset", header, nothing)
    libc_call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)



PARENT_PID = "GRADER_PARENT_PID"  # the pid a program started by a grader process must find as its parent
_forking, _forked_from = None, None  # in a child of os.fork(): the pid of the process that forked it


def _before_fork():
    global _forking
    _forking = os.getpid()


def _in_forked_child():
    global _forked_from
    _forked_from = _forking


os.register_at_fork(before=_before_fork, after_in_child=_in_forked_child)


def die_with_parent():
    """Ask Linux to kill this process when its parent dies (a killed Dask worker leaves nothing behind).

    Linux sends that signal only for a parent that dies after the request: a parent killed between
    starting this process and this call (a worker killed just then) leaves it running, re-parented,
    for as long as its job lasts. So the call then checks that the parent is still the one that
    started it, and exits if that one is gone: after os.fork() the forking process's pid (recorded
    just before the fork), in a program another grader process started its GRADER_PARENT_PID, which
    this call sets for the programs this process starts in turn (the zygote's for the worker, the
    jail's for nbgrader). A process 1 of a new PID namespace sees no parent (getppid() is 0): /proc,
    still the host's at this point, says whether the parent lives."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    expected = _forked_from or int(os.environ.get(PARENT_PID) or 0)
    if expected and os.getppid() != expected and not _alive(expected):
        os._exit(1)  # orphaned before the request above took effect: the job is lost anyway
    os.environ[PARENT_PID] = str(os.getpid())


def _alive(pid):
    """True if process `pid` runs (a zombie does not). A stale GRADER_PARENT_PID names a live process
    that is not our parent: then nothing is wrong, and this process runs on."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X", "x")
