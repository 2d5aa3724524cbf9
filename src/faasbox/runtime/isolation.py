"""The ``namespace`` isolation level: what a sandbox does to itself, by direct system
calls (no tool is exec'd per cold start).

Runs inside the sandbox process (stdlib only, loaded with the worker). What is the
same for every function happens ahead of need, in the spare (:func:`prepare`): steps
1-2 and the root's common part (a tmpfs, the system's binds, ``/tmp``, ``/dev``). The
rest happens at init (:func:`enter`), after the sandbox joined its memory cgroup and
opened its output file, before it imports the handler: the function's own binds, its
network namespace if any, ``pivot_root``, ``/proc``, read-only, privileges dropped.

1. ``unshare`` new mount, pid, ipc and uts namespaces (and a network namespace of its
   own, empty, for ``network: none``); when the platform does not run as root, a user
   namespace too, in which the platform's user is root (needed to mount);
2. ``fork``: the child is pid 1 of the new pid namespace and goes on as the sandbox;
   the parent stays behind as a *shim* that waits for it and ends the same way, so the
   supervisor and the zygote keep seeing one process (and one process group) per
   sandbox. When pid 1 ends, the kernel kills everything else in its namespace;
3. a fresh root: a small tmpfs with, at their own paths, read-only binds of the
   system's libraries, the interpreter and its standard library, the runtime, the
   function's code and dependency layer, and a read-write bind of the sandbox's own
   working folder; a private tmpfs ``/tmp`` with a size limit; a ``/dev`` with null,
   zero, full, random and urandom; ``pivot_root`` into it, the old root detached, a
   fresh ``/proc`` of the new pid namespace, and the root remounted read-only;
4. as root, become :data:`SANDBOX_UID` (``nobody``): no capabilities are left, so the
   sandbox cannot undo its mounts, open host files by handle, or load anything into
   the kernel. ``no_new_privs`` is set and every mount is ``nosuid``: no setuid
   program gives them back.

Nothing of the platform's home shows but the folders bound here, and nothing of
another sandbox: each sandbox builds its own root.
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal
from typing import Any, NoReturn

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

#: ``pivot_root`` has no glibc wrapper: its system call number per architecture.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "arm64": 41}
#: The user (and group) a sandbox runs as when the platform runs as root: ``nobody``,
#: which owns nothing a sandbox should reach.
SANDBOX_UID = 65534
SANDBOX_GID = 65534
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP = 24
_CAP_VERSION_3 = 0x20080522
#: Device nodes a sandbox gets (bound from the host's /dev).
DEVICES = ("null", "zero", "full", "random", "urandom")

_libc: Any = None


class IsolationError(OSError):
    """A namespace set-up step failed; says which."""


def _c() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise IsolationError(errno, f"{what}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    _check(_c().unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    _check(_c().mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           f"mount {source or fstype or ''} on {target}")


def umount2(target: str, flags: int) -> None:
    _check(_c().umount2(_b(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise IsolationError(0, f"pivot_root: unknown system call on {platform.machine()}")
    _check(_c().syscall(ctypes.c_long(number), _b(new_root), _b(put_old)), "pivot_root")


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


#: Where :func:`prepare` built this spare's root (None: not prepared).
_staged: str | None = None
#: Whether the platform runs as the host's root (else the sandbox is root only of a
#: user namespace of its own, mapped to the platform's user).
_host_root = False


def prepare(stage: dict[str, Any]) -> None:
    """Ahead of need, in a spare: new namespaces (steps 1-2; returns in pid 1 of the
    new pid namespace, the parent never returns) and the common part of the root, a
    tmpfs mounted on ``stage["root"]`` (an empty folder; the mount is seen only in
    this sandbox's mount namespace) with ``stage["binds"]`` (``[host path, path
    inside, writable]``), a ``/tmp`` of ``stage["tmp_mb"]`` MB and a ``/dev``.
    Raises IsolationError."""
    global _staged, _host_root
    root_user = _host_root = os.getuid() == 0
    flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID
    unshare(flags if root_user else flags | CLONE_NEWUSER)
    if not root_user:
        _map_ids(os.getuid(), os.getgid())
    child = os.fork()
    if child:
        _shim(child)
    root = stage["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the host
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    tmp = root + "/tmp"  # before the binds: one may lie under /tmp (a home there)
    os.makedirs(tmp, exist_ok=True)
    mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, f"size={int(stage['tmp_mb'])}m,mode=1777")
    for source, target, writable in stage["binds"]:
        _bind(root, source, target, writable)
    dev = root + "/dev"
    os.makedirs(dev, exist_ok=True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
    for name in DEVICES:
        open(f"{dev}/{name}", "w").close()
        mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")
    os.makedirs(root + "/proc", exist_ok=True)
    os.makedirs(root + "/.old-root", exist_ok=True)
    _staged = root


def enter(spec: dict[str, Any]) -> None:
    """At init, in a prepared spare: the function's own ``binds`` (as in
    :func:`prepare`), an empty network namespace for ``network: none``, then into the
    new root for good (steps 3-4), named ``hostname``. Raises IsolationError."""
    root = _staged
    if root is None:
        raise IsolationError(0, "this sandbox was not prepared for the namespace level")
    if spec.get("network") == "none":
        unshare(CLONE_NEWNET)
    for source, target, writable in spec["binds"]:
        _bind(root, source, target, writable)
    cwd = os.getcwd()
    pivot_root(root, root + "/.old-root")
    os.chdir("/")
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    umount2("/.old-root", MNT_DETACH)
    os.rmdir("/.old-root")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    if os.path.isdir(cwd):
        os.chdir(cwd)
    hostname = _b(spec.get("hostname", "sandbox")) or b"sandbox"
    _check(_c().sethostname(hostname, len(hostname)), "sethostname")
    if _host_root:
        uid, gid = host_ids()
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)  # from root to another user: every capability goes
    else:  # root of its own user namespace (the one id mapped): keep the id, not the power
        _drop_capabilities()
    _check(_c().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _drop_capabilities() -> None:
    """No capability left, none to regain: the bounding set emptied, then the
    effective, permitted and inheritable sets."""
    libc = _c()
    for cap in range(64):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
            _check(-1, "dropping capabilities")  # EINVAL past the last one is the end
    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # two of (effective, permitted, inheritable), all 0
    _check(libc.capset(header, data), "capset")


def host_ids() -> tuple[int, int]:
    """The host uid and gid a sandbox runs as (see :data:`SANDBOX_UID`)."""
    if os.getuid() == 0:
        return SANDBOX_UID, SANDBOX_GID
    return os.getuid(), os.getgid()


def _map_ids(uid: int, gid: int) -> None:
    """In a new user namespace: host ``uid`` and ``gid`` (the caller's own) are root
    there, nothing else is mapped."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def _shim(child: int) -> NoReturn:
    """The parent left outside the pid namespace: hold nothing of the sandbox's (its
    socket must close when the sandbox ends), wait for it, end as it ended."""
    os.closerange(0, 65536)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(1)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _bind(root: str, source: str, target: str, writable: bool) -> None:
    """``source`` of the host at ``target`` in the new root (a symlink stays a symlink:
    ``/bin -> usr/bin`` on merged-/usr systems)."""
    if not os.path.lexists(source):
        return
    where = root + target
    if os.path.islink(source) and source == target:
        os.makedirs(os.path.dirname(where), exist_ok=True)
        if not os.path.lexists(where):
            os.symlink(os.readlink(source), where)
        return
    if os.path.isdir(source):
        os.makedirs(where, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(where), exist_ok=True)
        open(where, "a").close()
    mount(source, where, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV
    mount(None, where, None, flags if writable else flags | MS_RDONLY)


def available() -> str | None:
    """None when this host lets a process build such a sandbox, else why not (probed
    in a forked child: unshare, a tmpfs, a pid namespace)."""
    _c()  # libc loaded here: a child forked from a threaded process must not dlopen
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        message = b""
        try:
            root = os.getuid() == 0
            unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID
                    | (0 if root else CLONE_NEWUSER))
            if not root:
                _map_ids(os.getuid(), os.getgid())
            mount(None, "/", None, MS_REC | MS_PRIVATE)
            mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=64k")
        except OSError as exc:
            message = str(exc).encode() or b"unshare failed"
        os.write(write, message)
        os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 4096).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    if not answer:
        return None
    if os.getuid() != 0:
        return f"{answer} (not root: user namespaces are needed, see " \
               "/proc/sys/user/max_user_namespaces)"
    return answer
