"""Every network namespace bufmon can enter, each with its own sock_diag socket.

A netlink socket belongs to the namespace it was created in, so each namespace is
entered once (setns in this thread, open the socket, come back) and its socket is
reused across refreshes. Namespaces are discovered each refresh from /run/netns and
/proc/PID/ns/net (Discovery: only new processes' links are read); those that vanish
are closed and dropped.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from collectors.cgroups import container_owner
from collectors.model import Sock
from collectors.sockdiag import DiagError, SockDiag, open_diag_socket
from collectors.unixdiag import dump_into as dump_unix
from collectors.untrusted import decode_name, read_comm

NETNS_RUN_DIR = "/run/netns"
PROC_NET_INIT_INO = 0xEFFFFFF9
NS_GET_NSTYPE = 0xB703  # ioctl _IO(0xb7, 0x3): the CLONE_NEW* type of an nsfs file
CLONE_NEWNET = 0x40000000


class NetnsError(RuntimeError):
    """A namespace the user asked for cannot be found or entered."""


@dataclass(slots=True)
class Namespace:
    inode: int
    label: str
    path: str  # what to open to enter it
    holder: str  # "comm/pid" of the first process in it, or "" for named ones
    name: str | None = None  # the container's or pod's name, when its runtime gives one

    def to_json(self) -> dict[str, object]:
        return {"label": self.label, "inode": self.inode, "holder": self.holder, "name": self.name}


def _link_inode(path: str) -> int | None:
    """The inode of a /proc/PID/ns/net link; readlink works where stat is denied (pid 1)."""
    try:
        link = os.readlink(path)  # "net:[4026531833]"
    except OSError:
        return None
    if not (link.startswith("net:[") and link.endswith("]")):
        return None
    try:
        return int(link[5:-1])
    except ValueError:
        return None


def _ns_inode(path: str) -> int | None:
    """The namespace inode of a /proc link or a /run/netns entry, None when unreadable."""
    inode = _link_inode(path)
    if inode is not None:
        return inode
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def open_netns(path: str, what: str | None = None) -> int:
    """An fd on the network namespace at `path`, else NetnsError (`what` names it).

    Never blocks and never opens a device or a FIFO for real: O_NONBLOCK, then the
    nsfs ioctl must say "network namespace" before anyone calls setns on it."""
    what = what or path
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ESRCH, errno.ENOTDIR):
            raise NetnsError(f"no such network namespace: {what}") from None
        raise NetnsError(f"cannot open network namespace {what}: {exc.strerror}") from None
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:  # ENOTTY: not an nsfs file at all
        kind = None
    if kind != CLONE_NEWNET:
        os.close(fd)
        raise NetnsError(f"not a network namespace: {what}")
    return fd


_LIBC = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    """setns(2) into the network namespace `fd` (os.setns is Python 3.12+)."""
    if _LIBC.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _comm(pid: str) -> str:
    try:
        return read_comm(f"/proc/{pid}/comm")
    except OSError:
        return "?"


def _named() -> dict[int, Namespace]:
    found: dict[int, Namespace] = {}
    try:
        names = sorted(os.listdir(NETNS_RUN_DIR))
    except OSError:  # no /run/netns: no named namespace
        names = []
    for name in names:
        path = os.path.join(NETNS_RUN_DIR, name)
        inode = _ns_inode(path)
        if inode is not None:
            found.setdefault(inode, Namespace(inode, decode_name(name), path, ""))
    return found


class Discovery:
    """Named namespaces plus every distinct /proc/PID/ns/net, keyed by inode.

    A process seldom changes namespace, so each walk reads the link of new pids only
    (and once more on the walk after, past the moment `unshare` or `ip netns exec`
    move right after they start) and remembers the others' links: a host with
    thousands of processes pays a /proc listing, not thousands of readlinks, and not
    even the listing while /proc/loadavg says no process started or ended. Every
    `recheck` seconds all links are read again, for a process that moved later or a
    pid reused meanwhile.
    A namespace still first seen through the same process keeps its `known` entry, so
    cgroup labels are read once per namespace, not every refresh."""

    def __init__(self, host_inode: int, recheck: float = 30.0, proc: str = "/proc") -> None:
        self.host_inode = host_inode
        self.recheck = recheck
        self.proc = proc
        self.links_read = 0  # /proc/PID/ns/net links read so far
        self._inode_of: dict[str, int | None] = {}  # pid -> namespace inode, None: unreadable
        self._young: set[str] = set()  # pids first seen by the last walk
        self._first_pid: dict[int, str] = {}  # namespace inode -> its lowest pid
        self._stamp: str | None = None  # see _tasks_stamp
        self._last_full = float("-inf")

    def walk(self, known: dict[int, Namespace]) -> dict[int, Namespace]:
        now = time.monotonic()
        full = now - self._last_full >= self.recheck
        if full:
            self._last_full = now
        stamp = self._tasks_stamp()
        if full or self._young or stamp is None or stamp != self._stamp:
            self._list_pids(full)
        self._stamp = stamp
        found = _named()
        for inode, pid in self._first_pid.items():
            if inode not in found:
                path = f"{self.proc}/{pid}/ns/net"
                found[inode] = self._namespace(inode, pid, path, known.get(inode))
        return found

    def _tasks_stamp(self) -> str | None:
        """The task count and the last pid given out (/proc/loadavg): while both stay
        the same no process started (each takes a new pid) and none ended."""
        try:
            with open(f"{self.proc}/loadavg", "rb") as f:
                fields = f.read().split()
        except OSError:
            return None
        return b" ".join(fields[3:5]).decode("ascii", "replace")

    def _list_pids(self, full: bool) -> None:
        """Every pid's namespace inode: read for new (and young) pids, else remembered."""
        before, young = self._inode_of, self._young
        inode_of: dict[str, int | None] = {}
        first_pid: dict[int, str] = {}
        self._young = set()
        # /proc lists pids in ascending order: a namespace's holder is its lowest pid
        for pid in os.listdir(self.proc):
            if not pid.isdigit():
                continue
            if full or pid not in before or pid in young:
                if before and pid not in before:
                    self._young.add(pid)
                inode = inode_of[pid] = _ns_inode(f"{self.proc}/{pid}/ns/net")
                self.links_read += 1
            else:
                inode = inode_of[pid] = before[pid]
            if inode is not None and inode not in first_pid:
                first_pid[inode] = pid
        self._inode_of, self._first_pid = inode_of, first_pid

    def _namespace(self, inode: int, pid: str, path: str, seen: Namespace | None) -> Namespace:
        """The namespace `inode`, first seen through process `pid`."""
        if inode == self.host_inode:
            return Namespace(inode, "host", path, "")
        if seen is not None and seen.path == path:
            return seen
        label, name = container_owner(pid) or (f"net:[{inode}]", None)
        return Namespace(inode, label, path, f"{_comm(pid)}/{pid}", name)


@contextmanager
def entered(path: str) -> Iterator[None]:
    """Run the body in the namespace at `path` (this thread only), then come back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = open_netns(path)
    except NetnsError:
        os.close(home)
        raise
    try:
        try:
            _setns(target)
        except OSError as exc:
            reason = os.strerror(exc.errno or 1)
            raise NetnsError(f"cannot enter namespace {path}: {reason}") from exc
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def _is_pid(sel: str) -> bool:
    return sel.isascii() and sel.isdigit()


def _selected_path(sel: str) -> tuple[str, str]:
    """What to open for a PID, a path or a /run/netns name, and how errors name it."""
    if _is_pid(sel):
        return f"/proc/{sel}/ns/net", f"process {sel}"
    if "/" in sel or sel in (".", ".."):
        return sel, repr(sel)
    return os.path.join(NETNS_RUN_DIR, sel), f"namespace {sel!r} in {NETNS_RUN_DIR}"


def _checked_inode(path: str, what: str) -> int:
    fd = open_netns(path, what)
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def _open_in(ns: Namespace) -> SockDiag:
    with entered(ns.path):
        sock: socket.socket = open_diag_socket()
    return SockDiag(ns.label, sock)


class NamespaceSet:
    """The namespaces selected by --netns, each with a reusable SockDiag.

    selector: "all" (every namespace; needs root), "current" (ours only), "auto"
    (all when root, else current), a name from /run/netns, a PID, or a path (it holds
    a "/") that must be a network namespace.
    """

    def __init__(self, selector: str = "auto") -> None:
        self.notices: list[str] = []
        self.is_root = os.geteuid() == 0
        if selector == "auto":
            selector = "all" if self.is_root else "current"
        if selector == "all" and not self.is_root:
            self.notices.append("not running as root: showing the current network namespace only")
            selector = "current"
        self.selector = selector
        # init's namespace; else kthreadd's (always init_net); else, for non-root,
        # the fixed inode newer kernels give init_net (PROC_NET_INIT_INO)
        self.host_inode = (
            _ns_inode("/proc/1/ns/net") or _ns_inode("/proc/2/ns/net") or PROC_NET_INIT_INO
        )
        self.own_inode = _ns_inode("/proc/thread-self/ns/net") or -2
        self.namespaces: dict[int, Namespace] = {}
        self.discovery = Discovery(self.host_inode)
        self._diags: dict[int, SockDiag] = {}
        self.unix: list[Sock] = []  # the UNIX sockets of the last dump (also in its list)
        self._select()  # fail early on a namespace that does not exist

    def _own(self) -> Namespace:
        if self.own_inode == self.host_inode:
            label = "host"
        else:
            names = {ns.inode: ns.label for ns in _named().values()}
            label = names.get(self.own_inode, f"net:[{self.own_inode}]")
        return Namespace(self.own_inode, label, "/proc/thread-self/ns/net", "")

    def _select(self) -> dict[int, Namespace]:
        sel = self.selector
        if sel == "current":
            own = self._own()
            return {own.inode: own}
        if sel == "all":
            found = self.discovery.walk(self.namespaces)
            if self.own_inode not in found:
                found[self.own_inode] = self._own()
            return found
        path, what = _selected_path(sel)
        inode = _link_inode(path) or _checked_inode(path, what)
        if inode == self.host_inode:
            return {inode: Namespace(inode, "host", path, "")}
        owner = container_owner(sel) if _is_pid(sel) else (decode_name(sel), None)
        label, name = owner if owner and owner[0] else (f"net:[{inode}]", None)
        return {inode: Namespace(inode, label, path, "", name)}

    def foreign(self) -> Namespace | None:
        """The one selected namespace when it is not bufmon's own (its facts differ)."""
        if len(self.namespaces) != 1:
            return None
        (ns,) = self.namespaces.values()
        return None if ns.inode == self.own_inode else ns

    def path_of(self, label: str) -> str | None:
        """What to enter to act in the namespace labelled `label` (None: our own)."""
        for ns in self.namespaces.values():
            if ns.label == label:
                return None if ns.inode == self.own_inode else ns.path
        raise NetnsError(f"namespace {label} is gone")

    def _diag_for(self, ns: Namespace) -> SockDiag | None:
        diag = self._diags.get(ns.inode)
        if diag is not None:
            diag.netns = ns.label
            return diag
        try:
            diag = SockDiag(ns.label) if ns.inode == self.own_inode else _open_in(ns)
        except (NetnsError, DiagError) as exc:
            if ns.inode == self.own_inode or self.selector != "all":
                raise
            self.notices.append(f"skipped namespace {ns.label}: {exc}")
            return None
        self._diags[ns.inode] = diag
        return diag

    def dump(self) -> list[Sock]:
        """All sockets of the selected namespaces; vanished namespaces are dropped."""
        self.notices = [n for n in self.notices if n.startswith("not running as root")]
        try:
            current = self._select()
        except NetnsError:
            if self.selector == "all":
                raise
            current = {}
            self.notices.append(f"namespace {self.selector} is gone")
        for inode in list(self._diags):
            if inode not in current:
                self._diags.pop(inode).close()
        self.namespaces = current
        out: list[Sock] = []
        self.unix = []
        for ns in current.values():
            diag = self._diag_for(ns)
            if diag is not None:
                diag.dump_into(out)
                dump_unix(diag, self.unix)
        out += self.unix
        return out

    def close(self) -> None:
        for diag in self._diags.values():
            diag.close()
        self._diags.clear()
