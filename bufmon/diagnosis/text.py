"""Reason and advice sentences of each flag: what was seen, with numbers, and the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from bufmon.present import endpoint
from collectors.model import Process, Sock

if TYPE_CHECKING:
    from bufmon.diagnosis.limits import Limit, Source


class Named(NamedTuple):
    """What a flag's text says about its socket, detached from the Sock: a flag builds
    its text late, and a Sock whose flags pointed back at it would make snapshots
    cyclic (collectors.gcpolicy relies on them being freed by reference counting)."""

    process: Process | None
    local_addr: str
    local_port: int
    peer_addr: str
    peer_port: int
    recv_q: int
    send_q: int

    @classmethod
    def of(cls, s: Sock) -> Named:
        return cls(
            s.process, s.local_addr, s.local_port, s.peer_addr, s.peer_port, s.recv_q, s.send_q
        )


def size(n: float) -> str:
    """131072 -> "128 KB" (binary units, the way buffer sizes are set)."""
    units = ("B", "KB", "MB", "GB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.0f} {units[i]}" if i == 0 or n >= 100 or n == int(n) else f"{n:.1f} {units[i]}"


def owner(sock: Named) -> str:
    """ "nginx (pid 42)" or a neutral phrase when the process is unknown."""
    p = sock.process
    return "the owning process" if p is None else f"{p.comm} (pid {p.pid})"


def peer(sock: Named) -> str:
    return endpoint(sock.peer_addr, sock.peer_port)


def local(sock: Named) -> str:
    return endpoint(sock.local_addr, sock.local_port)


def secs(t: float) -> str:
    return f"{t:.0f} s" if t >= 10 else f"{t:.1f} s"


def stalled_reader(
    sock: Named, idle: float, r: int, rb: int, rcv_wnd: int | None
) -> tuple[str, str]:
    detail = f"r {size(r)} of rb {size(rb)}"
    if rcv_wnd == 0:
        detail += ", advertising a zero window"
    return (
        f"{owner(sock)} has not read for {secs(idle)} while {size(sock.recv_q)} wait in "
        f"Recv-Q ({detail}).",
        f"Make {owner(sock)} read this socket (is it blocked or busy elsewhere?); a bigger "
        f"buffer only delays the stall.",
    )


def slow_reader(sock: Named, share: float, fill: float, window: float) -> tuple[str, str]:
    return (
        f"{owner(sock)} reads, but its receive buffer was over {fill:.0%} full for "
        f"{share:.0%} of the last {secs(window)} (Recv-Q {size(sock.recv_q)}).",
        f"Read faster or in bigger chunks in {owner(sock)}; leave SO_RCVBUF unset so "
        f"autotuning can grow the buffer (it only grows while the app reads).",
    )


def peer_zero_window(
    sock: Named, held: float | None, stuck: float, why: str, window: int = 0, mss: int = 0
) -> tuple[str, str]:
    """held is None when one sample cannot tell how long; `why` is "snd_wnd 0",
    "persist timer", "small window" (then `window` is below one `mss`) or "small buffer"
    (the same, while the receiving application keeps up: its buffer is the limit)."""
    if why in ("small window", "small buffer"):
        shut = f"holds its window at {window:,} bytes, below one MSS ({mss:,} bytes),"
    else:
        shut = f"keeps its window shut ({why})"
    if held is None:
        how = shut
        acked = "for how long one sample cannot tell"
    else:
        how = f"{shut} for {secs(held)}"
        acked = f"nothing acknowledged for {secs(stuck)}" if stuck >= 1 else "acks still trickle in"
    reason = (
        f"Peer {peer(sock)} {how}: {size(sock.send_q)} wait in Send-Q of {owner(sock)}, {acked}."
    )
    if why == "small buffer":
        return (
            f"{reason} The receiver keeps up: its receive buffer is the limit.",
            SEND_CAUSES["rcvbuf"][1],
        )
    return (
        reason,
        f"The peer application reads too slowly or not at all: fix it, and set "
        f"TCP_USER_TIMEOUT in {owner(sock)} so a peer that never reads is dropped.",
    )


SEND_CAUSES = {
    "peer": (
        "the peer's receive window limited the sender {share:.0%} of the busy time",
        "The peer reads too slowly: speed up the receiving application; set TCP_USER_TIMEOUT "
        "in {owner} so a peer that stops reading for good is dropped.",
    ),
    "buffer": (
        "our send buffer limited the sender {share:.0%} of the busy time",
        "Raise the send buffer of {owner} (SO_SNDBUF, or tcp_wmem/wmem_max so autotuning "
        "can grow it).",
    ),
    "rcvbuf": (
        "the receive window limited the sender {share:.0%} of the busy time while the "
        "receiver kept up: its receive buffer is the limit",
        "Give the receiver a bigger receive buffer (tcp_rmem, or its SO_RCVBUF and rmem_max).",
    ),
    "application": (
        "the sender was idle most of the time: {owner} has little to send",
        "Nothing to tune in the buffers: {owner} writes only now and then.",
    ),
    "network": (
        "neither the peer's window nor our buffer was the limit: the network (cwnd) is",
        "The path is the bottleneck (congestion or a slow link); nothing to fix in "
        "{owner} unless the link should be faster.",
    ),
}


def send_queue_full(sock: Named, fill: float, cause: str, share: float) -> tuple[str, str]:
    why, fix = SEND_CAUSES[cause]
    return (
        f"Send buffer of {owner(sock)} is {fill:.0%} full (Send-Q {size(sock.send_q)}); "
        + why.format(share=share, owner=owner(sock))
        + ".",
        fix.format(owner=owner(sock)),
    )


def _ms(usec: int) -> str:
    if usec < 1000:
        return f"{usec} µs"
    return f"{usec / 1000:.1f} ms" if usec < 100_000 else f"{usec / 1000:.0f} ms"


def buffer_limited(
    sock: Named, limit: Limit, rate: int, min_rtt: int, receiver: Named | None
) -> tuple[str, str]:
    """`limit.buffer` is the fixed buffer: our send buffer, or the receiver's (local)
    receive buffer (then `receiver` is that socket)."""
    source: Source | None = limit.buffer
    assert source is not None
    recv = limit.cause == "rcvbuf"
    whose = f"the receive buffer of {owner(receiver)}" if receiver else "our send buffer"
    ceiling = "-" if source.ceiling is None else size(source.ceiling)
    bdp = "unknown" if limit.bdp is None else size(limit.bdp)
    reason = (
        f"{owner(sock)} sending to {peer(sock)} was held back {limit.share:.0%} of its busy "
        f"time by {whose}: {size(source.size)}, {source.how}. Delivery "
        f"{size(rate)}/s, min_rtt {_ms(min_rtt)}, BDP {bdp} against that buffer "
        f"(autotuning ceiling {ceiling})."
    )
    sysctl, core, option = (
        ("tcp_rmem", "rmem_max", "SO_RCVBUF") if recv else ("tcp_wmem", "wmem_max", "SO_SNDBUF")
    )
    app = owner(receiver) if recv and receiver else owner(sock)
    if source.kind == "ceiling":
        advice = (
            f"Raise the max (third value) of net.ipv4.{sysctl} above {ceiling} on the "
            f"{'receiving' if recv else 'sending'} host, so autotuning can grow the buffer "
            f"toward the BDP; net.core.{core} caps what {option} may ask for."
        )
    else:
        advice = (
            f"{app} pins {option} (setsockopt) at {size(source.size // 2)} (the kernel doubles "
            f"it): remove that setsockopt so autotuning works, or ask for more (capped by "
            f"net.core.{core})."
        )
    return reason, advice


def close_wait(sock: Named, held: float, count: int) -> tuple[str, str]:
    return (
        f"Peer {peer(sock)} closed the connection {secs(held)} ago and {owner(sock)} has not: "
        f"it holds {count} connection{'s' if count != 1 else ''} in CLOSE-WAIT.",
        f"{owner(sock)} does not close() sockets whose peer hung up (read returned 0): "
        f"a descriptor leak; close them on EOF and on errors.",
    )


def orphan_sockets(orphans: int, limit: int) -> tuple[str, str]:
    return (
        f"{orphans} orphaned TCP sockets (closed by their application, still finishing) "
        f"against tcp_max_orphans {limit} ({orphans / limit:.0%}); past it the kernel resets "
        f'connections ("too many orphaned sockets").',
        "Find what closes connections with unsent data or to peers that never acknowledge "
        "the FIN; raise net.ipv4.tcp_max_orphans only with the memory for it (up to 64 KB each).",
    )


def rcvbuf_overrun(sock: Named | None, events: str, r: int = 0, rb: int = 0) -> tuple[str, str]:
    if sock is None:
        return (
            f"The kernel threw received data away ({events}); no open socket is over its "
            f"receive buffer now.",
            "Look for apps that shrink SO_RCVBUF or read slowly; raise rmem_max/tcp_rmem "
            "and leave SO_RCVBUF unset so autotuning works.",
        )
    return (
        f"Received data was thrown away and must be retransmitted ({events}); this socket "
        f"holds r {size(r)} against rb {size(rb)}.",
        f"Let {owner(sock)} read faster and give it a bigger receive buffer: drop the small "
        f"SO_RCVBUF (or raise it and rmem_max).",
    )


def rcvbuf_pruned(sock: Named, events: str, r: int, rb: int) -> tuple[str, str]:
    return (
        f"The kernel had to collapse receive queues to make room ({events}); nothing was "
        f"lost. This socket holds r {size(r)} against rb {size(rb)}.",
        f"Costs CPU only: let {owner(sock)} read sooner, or send fewer, bigger messages to it.",
    )


OVERFLOW = {
    0: " With tcp_abort_on_overflow 0 an overflowing connection is dropped silently: the "
    "client retries, and sees a delay, not an error.",
    1: " With tcp_abort_on_overflow 1 an overflowing connection is reset: clients see "
    "connection resets.",
}


def accept_queue(
    sock: Named, full: bool, drops: int, overflows: int, abort: int | None = None
) -> tuple[str, str]:
    state = "full" if full else f"{sock.recv_q / max(sock.send_q, 1):.0%} full"
    reason = (
        f"Accept queue of {local(sock)} is {state}: {sock.recv_q} connections wait for "
        f"accept() in {owner(sock)}, backlog {sock.send_q}"
    )
    if drops or overflows:
        reason += (
            f"; SYNs are being dropped ({drops} on this listener, ListenOverflows +{overflows})"
        )
    return (
        reason + ".",
        f"Make {owner(sock)} accept() faster (more workers), and raise its listen() backlog "
        f"together with net.core.somaxconn." + ("" if abort is None else OVERFLOW.get(abort, "")),
    )


def syn_backlog(sock: Named | None, count: int, backlog: int, cookies: str) -> tuple[str, str]:
    if sock is None:
        reason = f"A SYN queue overflowed ({cookies}); no listener shows half-open connections now"
    else:
        reason = f"{count} half-open connections (SYN-RECV) wait on {local(sock)}"
        reason += f", backlog {backlog}"
        if cookies:
            reason += f"; {cookies}"
    return (
        reason + ".",
        "A SYN flood or clients that never finish the handshake: keep tcp_syncookies on, "
        "raise the backlog, somaxconn and tcp_max_syn_backlog.",
    )


def udp_drops(sock: Named, kind: str, n: int, fill: float) -> tuple[str, str]:
    advice = (
        f"Read faster in {owner(sock)} and raise SO_RCVBUF (and net.core.rmem_max, which caps it)."
    )
    if kind == "dropped":
        reason = (
            f"{n} datagrams dropped since the last refresh: receive buffer of {owner(sock)} "
            f"is {fill:.0%} full."
        )
    elif kind == "total":
        reason = f"This socket has dropped {n} datagrams since it was opened ({fill:.0%} full)."
    elif kind == "full":
        reason = f"Receive buffer of {owner(sock)} is {fill:.0%} full: the next burst is dropped."
    else:
        reason = f"Send buffer of {owner(sock)} is {fill:.0%} full: sends fail or block."
        advice = f"Send slower in {owner(sock)} or raise SO_SNDBUF (and net.core.wmem_max)."
    return reason, advice


def udp_counters(events: str) -> tuple[str, str]:
    return (
        f"UDP datagrams were dropped ({events}) by sockets no longer open or not listed.",
        "Find the reader that falls behind; raise its SO_RCVBUF and net.core.rmem_max.",
    )


def memory_pressure(level: str, pages: int, limits: list[int], events: str) -> tuple[str, str]:
    low, pressure, high = limits
    what = {
        "approaching": f"is at {pages / pressure:.0%} of the pressure threshold",
        "pressure": "is above the pressure threshold: the kernel shrinks every TCP buffer",
        "high": "has reached the hard limit: TCP allocations fail",
    }[level]
    reason = f"TCP memory ({pages} pages) {what} (tcp_mem {low} {pressure} {high})"
    if events:
        reason += f"; {events}"
    return (
        reason + ".",
        "Find the sockets holding memory (sort by Recv-Q/Send-Q: stalled readers, zero "
        "windows) and fix them; raise net.ipv4.tcp_mem only if the load is real.",
    )


def memory_events(events: str) -> tuple[str, str]:
    return (
        f"The kernel reported TCP memory trouble ({events}).",
        "Find the sockets holding memory (stalled readers, zero windows) and fix them; "
        "raise net.ipv4.tcp_mem only if the load is real.",
    )


def port_exhaustion(
    group: tuple[str, str, int], used: int, size_: int, sock: Named | None
) -> tuple[str, str]:
    local_ip, remote_ip, remote_port = group
    remote = f"[{remote_ip}]" if ":" in remote_ip else remote_ip
    who = "" if sock is None else f" (mostly {owner(sock)})"
    return (
        f"{used} of {size_} local ports ({used / size_:.0%}) are taken by connections from "
        f"{local_ip} to {remote}:{remote_port}, TIME-WAIT included{who}.",
        "Reuse connections (keep-alive, a pool) instead of one per request; widen "
        "ip_local_port_range or add local addresses if that is not possible.",
    )


def nagle_hint(
    sock: Named, srtt_ms: float, min_rtt_ms: float, delayed_acks: int
) -> tuple[str, str]:
    acks = f"; DelayedACKs rose by {delayed_acks}" if delayed_acks else ""
    return (
        f"Small writes wait: srtt {srtt_ms:.0f} ms against min_rtt {min_rtt_ms:.1f} ms on an "
        f"app-limited connection with small segments{acks}. sock_diag cannot see TCP_NODELAY, "
        f"so this is a hint, not a finding.",
        f"If {owner(sock)} does write-write-read, set TCP_NODELAY or send each message in "
        f"one write.",
    )
