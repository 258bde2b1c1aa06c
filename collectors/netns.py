"""Every network namespace bufmon can enter, each with its own sock_diag socket.

A netlink socket belongs to the namespace it was created in, so each namespace is
entered once (setns in this thread, open the socket, come back) and its socket is
reused across refreshes. Namespaces are discovered each refresh from /run/netns and
/proc/PID/ns/net (Discovery: new processes' links, and a share of the others); those
that vanish are closed and dropped.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import math
import os
import socket
import time
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from itertools import chain, islice
from typing import NamedTuple

from collectors.checkpoint import Checkpoint, no_pause
from collectors.model import Sock
from collectors.sockdiag import DiagError, SockDiag, open_diag_socket
from collectors.unixdiag import dump_into as dump_unix
from collectors.untrusted import decode_name, read_comm

NETNS_RUN_DIR = "/run/netns"
PROC_NET_INIT_INO = 0xEFFFFFF9
NS_GET_NSTYPE = 0xB703  # ioctl _IO(0xb7, 0x3): the CLONE_NEW* type of an nsfs file
CLONE_NEWNET = 0x40000000
SCAN_MIN = 1024  # new pids tried one by one rather than listing /proc, at least
RETRIED = 32  # pids before the last walk's last pid tried again while unknown


class NetnsError(RuntimeError):
    """A namespace the user asked for cannot be found or entered."""


class Namespace(NamedTuple):
    inode: int
    label: str
    path: str  # what to open to enter it
    holder: str  # "comm/pid" of the first process in it, or "" for named ones
    name: str | None = None  # the container's or pod's name, when its runtime gives one

    def to_json(self) -> dict[str, object]:
        return {"label": self.label, "inode": self.inode, "holder": self.holder, "name": self.name}


def _link_text(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def link_inode(path: str) -> int | None:
    """The inode of a /proc/PID/ns/net link; readlink works where stat is denied (pid 1)."""
    link = _link_text(path)  # "net:[4026531833]"
    if link is None or not (link.startswith("net:[") and link.endswith("]")):
        return None
    try:
        return int(link[5:-1])
    except ValueError:
        return None


def _ns_inode(path: str) -> int | None:
    """The namespace inode of a /proc link or a /run/netns entry, None when unreadable."""
    inode = link_inode(path)
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


def _names(path: str) -> Generator[str]:
    """The entries of the directory `path`, read from it as they are asked for."""
    try:
        listing = os.scandir(path)
    except OSError:
        return
    with listing:
        for entry in listing:
            yield entry.name


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

    A process seldom changes namespace, so a walk reads the link of new pids (and once
    more on the walk after, past the moment `unshare` or `ip netns exec` move right
    after they start) and remembers the others'. New pids are found without listing
    /proc: /proc/loadavg gives the last pid the kernel handed out, and the pids since
    the previous walk are tried one by one (most are gone or were threads) while they
    are fewer than a listing goes through; else /proc is listed. Each namespace's holder
    (its lowest pid) is checked to be still there, so a namespace whose last process
    ended goes at once. Each walk also reads again its share of the remembered links,
    so that every one is read again within `recheck` seconds (a process that moved
    later), and lists its share of /proc (a pid the tries missed: the directory stays
    open and each walk goes on where the last stopped). While no process starts or
    ends, a walk reads only those shares.
    A namespace still first seen through the same process keeps its `known` entry, so
    cgroup labels are read once per namespace, not every refresh."""

    def __init__(self, host_inode: int, recheck: float = 30.0, proc: str = "/proc") -> None:
        self.host_inode = host_inode
        self.recheck = recheck  # <= 0: list /proc and read every link each walk
        self.proc = proc
        self.links_read = 0  # /proc/PID/ns/net links read (or tried) so far
        self.listings = 0  # /proc listings so far
        self._inode_of: dict[int, int | None] = {}  # pid -> namespace inode, None: unreadable
        self._young: set[int] = set()  # pids first seen by the last walk
        self._first_pid: dict[int, int] = {}  # namespace inode -> its lowest pid
        self._moved = False  # a remembered pid ended or moved since holders were checked
        self._due: list[int] = []  # remembered pids whose links coming walks read again
        self._listing: Generator[str] | None = None  # /proc, listed a share a walk
        self._entries = 0  # in /proc when it was last listed to the end
        self._listed = 0  # entries of /proc listed since the listing started again
        self._stamp: tuple[bytes, int] | None = None  # see _tasks_stamp
        self._last_walk: float | None = None
        # pids are tried by number only when /proc numbers them as our pid namespace,
        # whose last pid /proc/loadavg gives
        self._scan = _link_text(f"{proc}/self") == str(os.getpid())

    def walk(self, known: dict[int, Namespace]) -> dict[int, Namespace]:
        now = time.monotonic()
        stamp = self._tasks_stamp()  # before reading: a pid given out later waits for the next
        if self._last_walk is None or self.recheck <= 0:
            self._list_pids(reread=True)
        else:
            self._catch_up(stamp, now - self._last_walk)
        self._stamp, self._last_walk = stamp, now
        found = _named()
        for inode, pid in self._first_pid.items():
            if inode not in found:
                found[inode] = self._namespace(inode, str(pid), known.get(inode))
        return found

    def _catch_up(self, stamp: tuple[bytes, int] | None, since: float) -> None:
        """What changed in the `since` seconds after the last walk, without reading
        every link."""
        new = self._new_pids(stamp)
        if new is None:
            self._list_pids(reread=False)
        else:
            self._read_new(new)
            self._list_share(self._share(self._entries, since))
        self._reread_share(self._share(len(self._inode_of), since))
        if stamp != self._stamp or self._moved:
            self._check_holders()

    def _share(self, count: int, since: float) -> int:
        """How many of `count` come due in `since` seconds, all within `recheck`."""
        return min(count, math.ceil(count * since / self.recheck))

    def close(self) -> None:
        if self._listing is not None:
            self._listing.close()
            self._listing = None

    def _tasks_stamp(self) -> tuple[bytes, int] | None:
        """The task count and the last pid given out (/proc/loadavg): while both stay
        the same no task started (each takes a new pid) and none ended."""
        try:
            with open(f"{self.proc}/loadavg", "rb") as f:
                fields = f.read().split()
            return fields[3], int(fields[4])
        except (OSError, IndexError, ValueError):
            return None

    def _new_pids(self, stamp: tuple[bytes, int] | None) -> Iterable[int] | None:
        """The pids given out since the last walk's stamp, None when they cannot be
        told, when there are more than a /proc listing goes through, or when where
        they wrapped is unknown. The last RETRIED pids before are tried again when
        unknown: a pid is given out a moment before its process shows in /proc."""
        if not self._scan or stamp is None or self._stamp is None:
            return None
        if stamp == self._stamp:
            return ()
        previous, last = self._stamp[1], stamp[1]
        if last >= previous:
            spans = [range(previous + 1, last + 1)]
        else:  # past pid_max the kernel starts again from the low pids
            pid_max = self._pid_max()
            if pid_max is None or pid_max <= previous:
                return None
            spans = [range(previous + 1, pid_max), range(1, last + 1)]
        if sum(map(len, spans)) > max(SCAN_MIN, len(self._inode_of)):
            return None
        retried = range(max(previous - RETRIED, 0) + 1, previous + 1)
        unknown = (pid for pid in retried if pid not in self._inode_of)
        return chain(unknown, *spans)

    def _pid_max(self) -> int | None:
        try:
            with open(f"{self.proc}/sys/kernel/pid_max", "rb") as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def _read(self, pid: int) -> int | None:
        self.links_read += 1
        return link_inode(f"{self.proc}/{pid}/ns/net")

    def _is_process(self, pid: int) -> bool:
        """Whether `pid` is a process, not a thread's id (/proc/TID opens but is not listed)."""
        try:
            with open(f"{self.proc}/{pid}/status", "rb") as f:
                head = f.read(512)  # Name, Umask, State, Tgid: Tgid comes fourth
        except OSError:
            return False
        for line in head.splitlines():
            if line.startswith(b"Tgid:"):
                return line[5:].strip() == str(pid).encode()
        return False

    def _hold(self, inode: int, pid: int) -> None:
        """Count `pid` in namespace `inode`, whose holder is its lowest pid."""
        holder = self._first_pid.get(inode)
        if holder is None or pid < holder:
            self._first_pid[inode] = pid

    def _set(self, pid: int, inode: int | None) -> None:
        """Remember what was read of `pid` (None: it ended, or is no process)."""
        if self._inode_of.get(pid, inode) != inode:
            self._moved = True
        if inode is None:
            self._inode_of.pop(pid, None)
        else:
            self._inode_of[pid] = inode
            self._hold(inode, pid)

    def _list_pids(self, reread: bool) -> None:
        """Every listed pid's namespace inode: read for new and young pids (all when
        `reread`), else remembered; holders are recounted from them."""
        self.listings += 1
        before, young = self._inode_of, self._young
        names = os.listdir(self.proc)
        self._entries = len(names)
        pids = [int(name) for name in names if name.isdigit()]
        # None kept for an unreadable pid: it is not read again
        self._inode_of = {pid: before.get(pid) for pid in pids}
        self._young = set()
        for pid in pids if reread else [p for p in pids if p not in before or p in young]:
            if before and pid not in before:
                self._young.add(pid)
            self._inode_of[pid] = self._read(pid)
        self._first_pid, self._moved = {}, False
        for pid, inode in self._inode_of.items():
            if inode is not None:
                self._hold(inode, pid)

    def _read_new(self, new: Iterable[int]) -> None:
        """Read the young pids again and the `new` ones (processes only)."""
        young, self._young = self._young, set()
        for pid in young:
            self._set(pid, self._read(pid))
        for pid in new:
            inode = self._read(pid)  # most fail: the pid ended, or a thread's went
            if inode is not None and self._is_process(pid):
                self._young.add(pid)
            else:
                inode = None
            self._set(pid, inode)

    def _list_share(self, share: int) -> None:
        """The next `share` entries of /proc (pids ascend), reading the links of the
        pids not remembered; at the end the next walk starts again."""
        if self._listing is None:
            self._listing = _names(self.proc)
        listed = self._listed
        for name in islice(self._listing, share):
            self._listed += 1
            if name.isdigit() and (pid := int(name)) not in self._inode_of:
                inode = self._read(pid)
                if inode is not None:
                    self._young.add(pid)
                self._set(pid, inode)
        if self._listed - listed < share:  # the end
            self._entries, self._listed = self._listed or self._entries, 0
            self.close()

    def _reread_share(self, share: int) -> None:
        """Read again `share` remembered links, in turn: each is read again within
        `recheck` seconds."""
        for _ in range(share):
            if not self._due:
                self._due = list(self._inode_of)
                if not self._due:
                    return
            pid = self._due.pop()
            if pid in self._inode_of:
                self._set(pid, self._read(pid))

    def _check_holders(self) -> None:
        """Each namespace's holder is still there and in it, else the next lowest pid
        remembered in it that is; a namespace with none left is gone."""
        for inode, pid in list(self._first_pid.items()):
            if not self._still_in(pid, inode):
                self._first_pid.pop(inode)
                members = sorted(p for p, i in self._inode_of.items() if i == inode)
                for member in members:
                    if self._still_in(member, inode):
                        self._hold(inode, member)
                        break
        self._moved = False

    def _still_in(self, pid: int, inode: int) -> bool:
        """Whether process `pid` is still in namespace `inode` (else it is counted
        where it is now, or forgotten when it ended)."""
        if self._inode_of.get(pid) != inode:
            return False
        now = self._read(pid)
        if now != inode:
            self._set(pid, now)
        return now == inode

    def _namespace(self, inode: int, pid: str, seen: Namespace | None) -> Namespace:
        """The namespace `inode`, first seen through process `pid`."""
        path = f"{self.proc}/{pid}/ns/net"
        if inode == self.host_inode:
            return Namespace(inode, "host", path, "")
        if seen is not None and seen.path == path:
            return seen
        from collectors.cgroups import container_owner  # late: only `all` and PIDs need it

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
        # fails early on a namespace that does not exist; chosen() before the first dump
        self.namespaces = self._select()

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
        inode = link_inode(path) or _checked_inode(path, what)
        if inode == self.host_inode:
            return {inode: Namespace(inode, "host", path, "")}
        from collectors.cgroups import container_owner

        owner = container_owner(sel) if _is_pid(sel) else (decode_name(sel), None)
        label, name = owner if owner and owner[0] else (f"net:[{inode}]", None)
        return {inode: Namespace(inode, label, path, "", name)}

    def chosen(self) -> set[int] | None:
        """The selected namespaces' inodes; None when every namespace is selected."""
        return None if self.selector == "all" else set(self.namespaces)

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

    def dump(self, checkpoint: Checkpoint = no_pause) -> list[Sock]:
        """All sockets of the selected namespaces; vanished namespaces are dropped.
        `checkpoint()` between the dump's receives (collectors.checkpoint)."""
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
                diag.dump_into(out, checkpoint=checkpoint)
                dump_unix(diag, self.unix)
        out += self.unix
        return out

    def close(self) -> None:
        for diag in self._diags.values():
            diag.close()
        self._diags.clear()
        self.discovery.close()
