"""Close one TCP or UDP socket through sock_diag SOCK_DESTROY, as `ss -K` does.

The request names the socket by its whole inet_diag id (ports, addresses, cookie) and
goes through a netlink socket opened in the socket's own namespace. The kernel needs
CAP_NET_ADMIN and CONFIG_INET_DIAG_DESTROY; its answer becomes one Outcome.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from contextlib import nullcontext
from dataclasses import dataclass

from collectors.model import Sock
from collectors.netns import entered
from collectors.sockdiag import (
    NLMSG_ERROR,
    NLMSGHDR,
    PROTOCOLS,
    REQ_V2,
    DiagError,
    open_diag_socket,
)

SOCK_DESTROY = 21
NLM_F_REQUEST_ACK = 0x1 | 0x4
CAP_NET_ADMIN = 12
FAMILIES = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}
ACK_TIMEOUT = 5.0  # seconds: the kernel answers at once; never hang the caller

CLOSED, REFUSED, GONE = "closed", "refused", "gone already"


@dataclass(frozen=True, slots=True)
class Outcome:
    result: str  # CLOSED, REFUSED or GONE
    reason: str = ""  # why it was refused, in words
    err: int = 0  # the kernel's errno

    @property
    def final(self) -> bool:
        """No other socket would fare better: no right, or no kernel support."""
        return self.err in (errno.EPERM, errno.EACCES, errno.EOPNOTSUPP)

    def __str__(self) -> str:
        return f"{self.result}: {self.reason}" if self.reason else self.result


def may_destroy() -> bool:
    """Whether this process holds CAP_NET_ADMIN (what the kernel checks)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError):
        pass
    return os.geteuid() == 0


def _sockid(sock: Sock, ifindex: int) -> bytes:
    """struct inet_diag_sockid: ports big-endian, addresses raw, interface, the cookie."""
    family = FAMILIES[sock.family]
    src = socket.inet_pton(family, sock.local_addr).ljust(16, b"\0")
    dst = socket.inet_pton(family, sock.peer_addr).ljust(16, b"\0")
    ends = struct.pack("!HH16s16s", sock.local_port, sock.peer_port, src, dst)
    return ends + struct.pack("=III", ifindex, sock.cookie & 0xFFFFFFFF, sock.cookie >> 32)


def request(sock: Sock, seq: int = 1, ifindex: int = 0) -> bytes:
    """The SOCK_DESTROY message for `sock` (TCP or UDP, IPv4 or IPv6); `ifindex` names
    the interface a socket is bound to (SO_BINDTODEVICE), 0 for none."""
    family, proto = FAMILIES[sock.family], PROTOCOLS[sock.proto]
    body = REQ_V2.pack(family, proto, 0, 0, 0, _sockid(sock, ifindex))
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), SOCK_DESTROY, NLM_F_REQUEST_ACK, seq, 0) + body


def outcome_of(err: int) -> Outcome:
    """What the kernel's answer (0 or a positive errno) means to the user."""
    if err == 0:
        return Outcome(CLOSED)
    if err == errno.ENOENT:
        return Outcome(GONE, err=err)
    if err in (errno.EPERM, errno.EACCES):
        why = "closing a socket needs CAP_NET_ADMIN (root)"
    elif err == errno.EOPNOTSUPP:
        why = "this kernel cannot close sockets (built without CONFIG_INET_DIAG_DESTROY)"
    else:
        return Outcome(REFUSED, os.strerror(err), err)
    return Outcome(REFUSED, f"{os.strerror(err)}: {why}", err)


def _answer(link: socket.socket, seq: int) -> int:
    """The errno of the kernel's ack to request `seq` (0: done)."""
    link.settimeout(ACK_TIMEOUT)
    while True:
        try:
            data = link.recv(65536)
        except OSError as exc:
            raise DiagError(f"no answer to the close request: {exc.strerror or exc}") from exc
        pos = 0
        while pos + NLMSGHDR.size <= len(data):
            length, mtype, _flags, mseq, _pid = NLMSGHDR.unpack_from(data, pos)
            if length < NLMSGHDR.size:
                raise DiagError(f"malformed netlink message (length {length})")
            if mtype == NLMSG_ERROR and mseq == seq and length >= 20:
                return -struct.unpack_from("=i", data, pos + 16)[0]
            pos += (length + 3) & ~3


class Closer:
    """A netlink socket in one namespace, reused for every socket closed there."""

    def __init__(self, netns_path: str | None = None) -> None:
        """`netns_path` enters the namespace (None: the one we run in). Raises DiagError
        or NetnsError when it cannot be opened."""
        with nullcontext() if netns_path is None else entered(netns_path):
            self.link = open_diag_socket()
            self.interfaces = [index for index, _name in socket.if_nameindex()]
        self._seq = 0

    def destroy(self, sock: Sock) -> Outcome:
        """Close `sock`; raises DiagError when the question cannot even be asked."""
        if sock.proto not in PROTOCOLS or sock.family not in FAMILIES:
            return Outcome(REFUSED, f"a {sock.proto} socket cannot be closed from outside")
        # A socket bound to an interface is found only under that interface's index,
        # which sock_diag's list does not keep: not found, try each (the cookie still
        # names the one socket).
        for ifindex in (0, *self.interfaces):
            self._seq += 1
            try:
                self.link.send(request(sock, self._seq, ifindex))
            except OSError as exc:
                raise DiagError(f"cannot send the close request: {exc.strerror}") from exc
            err = _answer(self.link, self._seq)
            if err != errno.ENOENT:
                break
        return outcome_of(err)

    def close(self) -> None:
        self.link.close()


def destroy(sock: Sock, netns_path: str | None = None) -> Outcome:
    """Close one socket through a Closer of its own."""
    closer = Closer(netns_path)
    try:
        return closer.destroy(sock)
    finally:
        closer.close()
