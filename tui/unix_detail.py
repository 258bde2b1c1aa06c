"""The detail part of a UNIX socket: its type and path, and the other end of the pair."""

from __future__ import annotations

from rich.text import Text

from collectors.model import Process, Snapshot, Sock, UnixSock
from collectors.untrusted import printable
from tui.detail_text import Block
from tui.fmt import DIM, human_bytes


def peer_of(snapshot: Snapshot | None, s: Sock | None) -> UnixSock | None:
    """The UNIX socket on the other end of `s`, if it is in the snapshot."""
    if snapshot is None or not isinstance(s, UnixSock) or not s.peer_inode:
        return None
    for other in snapshot.sockets:
        if other.inode == s.peer_inode and isinstance(other, UnixSock):
            return other
    return None


def _name(p: Process | None) -> str:
    return "unknown" if p is None else printable(f"{p.comm}/{p.pid} ({p.user})")


def unix_text(s: UnixSock, peer: UnixSock | None, width: int) -> Text:
    block = Block("UNIX", width)
    block.row("Socket")
    block.pair("type", s.sock_type)
    block.pair("path", printable(s.path or "(unbound)"))
    if s.is_listener:
        block.row("Waiting")
        block.pair("clients", str(len(s.icons)))
        if s.peer_process is not None:
            block.pair("first from", _name(s.peer_process))
        return block.text
    block.row("Peer")
    if not s.peer_inode and s.peer_process is None:
        block.add("not connected", DIM)
    else:
        block.pair("inode", str(s.peer_inode) if s.peer_inode else "not yet accepted")
        block.pair("path", printable(s.peer_addr or "(unbound)"))
        block.pair("process", _name(s.peer_process))
    if peer is not None:
        block.row("Its queues")
        block.pair("Recv-Q", human_bytes(peer.recv_q))
        block.pair("Send-Q", human_bytes(peer.send_q))
    block.row("Queued in")
    block.pair("by peers", f"{human_bytes(s.senders_q)} of their send buffers")
    return block.text
