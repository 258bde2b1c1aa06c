"""Rich Text for the detail screen: everything known about one socket."""

from __future__ import annotations

from collections.abc import Callable

from rich.style import Style
from rich.text import Text

from bufmon.diagnosis.config import SendQueueFull
from bufmon.diagnosis.limits import (
    CHRONO_WINDOW,
    Limit,
    Source,
    Sysctls,
    buffer_source,
    reader_behind,
    receiver_of,
    recent,
    send_limit,
)
from bufmon.present import endpoint, flags_worst_first, netns_text
from bufmon.unix_ends import ends
from collectors.model import (
    SK_BACKLOG,
    SK_DROPS,
    SK_FWD,
    SK_OPTMEM,
    SK_RCVBUF,
    SK_RMEM,
    SK_SNDBUF,
    SK_WMEM,
    SK_WQUEUED,
    Sock,
    TcpInfo,
)
from collectors.untrusted import printable
from tui.columns import recv_label, send_label
from tui.fmt import (
    DIM,
    SEVERITY_STYLES,
    bar,
    human_bytes,
    human_duration,
    human_usec,
)
from tui.source import Series

LABEL = Style(bold=True)
LABEL_WIDTH = 12
INFINITE_SSTHRESH = 0x7FFFFFFF  # TCP_INFINITE_SSTHRESH: slow start has not ended
LIMIT_VERDICTS = {
    "peer": ("→ the peer's receive window (the peer reads too slowly)", "warning"),
    "rcvbuf": ("→ the receiver's buffer (its window; the receiver keeps up)", "warning"),
    "buffer": ("→ our send buffer (SO_SNDBUF / tcp_wmem)", "warning"),
    "application": ("→ the application: little to send", "info"),
    "network": ("→ neither window nor buffer: the network (cwnd, loss)", "info"),
}
SOURCE_NAMES = {
    "autotuned": "autotuned, below the ceiling",
    "ceiling": "at the autotuning ceiling",
    "application": "fixed by the application",
    "system": "fixed by the system",
    "unknown": "source unknown",
}

Formatter = Callable[[int], str]


def _count(value: int) -> str:
    return str(value)


def _ssthresh(value: int) -> str:
    return "inf" if value >= INFINITE_SSTHRESH else str(value)


def _rate(value: int) -> str:
    return f"{human_bytes(value * 8)}bit/s"


# group title -> (tcp_info field, label, formatter)
TCP_GROUPS: tuple[tuple[str, tuple[tuple[str, str, Formatter], ...]], ...] = (
    (
        "RTT",
        (
            ("rtt", "rtt", human_usec),
            ("rttvar", "var", human_usec),
            ("min_rtt", "min", human_usec),
            ("rto", "rto", human_usec),
            ("ato", "ato", human_usec),
        ),
    ),
    (
        "Windows",
        (
            ("snd_cwnd", "cwnd", _count),
            ("snd_ssthresh", "ssthresh", _ssthresh),
            ("snd_wnd", "snd_wnd", human_bytes),
            ("rcv_wnd", "rcv_wnd", human_bytes),
            ("rcv_space", "rcv_space", human_bytes),
            ("snd_mss", "mss", _count),
        ),
    ),
    (
        "Throughput",
        (
            ("bytes_sent", "sent", human_bytes),
            ("bytes_acked", "acked", human_bytes),
            ("bytes_received", "received", human_bytes),
            ("delivery_rate", "delivery", _rate),
            ("pacing_rate", "pacing", _rate),
            ("notsent_bytes", "notsent", human_bytes),
        ),
    ),
    (
        "Retransmits",
        (
            ("retrans", "now", _count),
            ("total_retrans", "total", _count),
            ("lost", "lost", _count),
            ("bytes_retrans", "bytes", human_bytes),
            ("total_rto", "rto", _count),
            ("dsack_dups", "dsack", _count),
        ),
    ),
)


class Block:
    """Labelled rows of `name value` pairs that wrap under their label, not at column 0."""

    def __init__(self, title: str, width: int) -> None:
        self.text = Text()
        self.text.append(title, LABEL)
        self.width = width
        self.column = len(title)

    def row(self, label: str) -> None:
        self.text.append(f"\n{label:<{LABEL_WIDTH}}", LABEL)
        self.column = LABEL_WIDTH

    def add(self, value: str, style: Style | str | None = None) -> None:
        if self.column + len(value) > self.width and self.column > LABEL_WIDTH:
            self.row("")
        self.text.append(value, style)
        self.column += len(value)

    def pair(self, label: str, value: str) -> None:
        if self.column + len(label) + len(value) + 3 > self.width and self.column > LABEL_WIDTH:
            self.row("")
        self.text.append(f"{label} ", DIM)
        self.text.append(f"{value}  ")
        self.column += len(label) + len(value) + 3


def title_text(s: Sock, closed: bool) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{s.proto.upper()} {s.state}  ", LABEL)
    local, peer = ends(s)
    text.append(local)
    text.append(" → ", DIM)
    text.append(peer)
    if closed:  # before the namespace: a long namespace name must not hide it
        text.append("   CLOSED (last seen values)", SEVERITY_STYLES["critical"])
    named = f" ({s.netns})" if s.netns_name else ""
    text.append(f"   netns {printable(netns_text(s) + named)}", DIM)
    return text


def owner_text(s: Sock, width: int) -> Text:
    block = Block("Owner", width)
    block.row("Process")
    if s.process is None and s.listener is not None:
        lst = s.listener
        block.add(f"none yet: in the accept queue of {endpoint(lst.local_addr, lst.local_port)}  ")
        if lst.process is not None:
            block.pair("listener pid", str(lst.process.pid))
            block.pair("command", printable(lst.process.comm))
    elif s.process is None:
        block.add("unknown (exited, or owned by another namespace's process)  ", DIM)
    else:
        block.pair("pid", str(s.process.pid))
        block.pair("command", printable(s.process.comm))
        block.pair("user", printable(s.process.user))
    block.pair("uid", str(s.uid))
    block.row("Socket")
    block.pair("inode", str(s.inode))
    block.pair("cookie", str(s.cookie))
    block.pair("family", s.family)
    block.row("Timer")
    block.pair("timer", s.timer if s.timer == "off" else f"{s.timer} in {s.timer_expires_ms} ms")
    block.pair("retrans", str(s.retrans))
    return block.text


def _gauge_row(block: Block, label: str, fill: float | None, value: str) -> None:
    block.row(label)
    if fill is not None:
        for segment in bar(fill, 20):
            block.add(segment.text, segment.style)
        block.add(f" {fill:4.0%}  ")
    block.add(value)


def memory_text(s: Sock, width: int) -> Text:
    block = Block("Queues", width)
    _gauge_row(block, "Recv-Q", s.recv_fill, f"{recv_label(s)}  (Recv-Q {s.recv_q})")
    _gauge_row(block, "Send-Q", s.send_fill, f"{send_label(s)}  (Send-Q {s.send_q})")
    sk = s.skmem
    block.row("skmem")
    if sk is None:
        block.add("not reported for this state", DIM)
        return block.text
    for label, index in (
        ("r", SK_RMEM),
        ("rb", SK_RCVBUF),
        ("t", SK_WMEM),
        ("tb", SK_SNDBUF),
        ("f", SK_FWD),
        ("w", SK_WQUEUED),
        ("o", SK_OPTMEM),
        ("bl", SK_BACKLOG),
    ):
        block.pair(label, human_bytes(sk[index]))
    block.pair("drops", str(sk[SK_DROPS]))
    return block.text


def _limits(block: Block, info: TcpInfo, limit: Limit | None) -> None:
    """The sender's limit, judged as the send_queue_full and buffer_limited rules judge it."""
    block.row("Limited by")
    if limit is None:
        block.add("not reported by this kernel", DIM)
        return
    block.pair("busy", human_usec(limit.busy))
    span = f"last {CHRONO_WINDOW:.0f} s" if limit.recent else "lifetime (no recent history)"
    block.pair("over", span)
    if limit.busy_share is not None:
        block.pair("busy share", f"{limit.busy_share:.0%}")
    if not limit.busy:
        block.add("the sender has not been busy", DIM)
        return
    block.pair("rwnd_limited", f"{limit.rwnd_share:.0%}")
    block.pair("sndbuf_limited", f"{limit.sndbuf_share:.0%}")
    verdict, style = LIMIT_VERDICTS[limit.cause]
    block.add(verdict, SEVERITY_STYLES[style])
    if limit.buffer is not None and limit.buffer.fixed:
        block.add(f" ({SOURCE_NAMES[limit.buffer.kind]}: buffer_limited)", SEVERITY_STYLES[style])


def _receiving(block: Block, s: Sock) -> None:
    """Whether this socket's own application keeps up with what it receives."""
    block.row("Receiving")
    if reader_behind((f.kind for f in s.flags), s):
        block.add("→ the application reads too slowly (Recv-Q waits)", SEVERITY_STYLES["warning"])
    else:
        block.add("the application keeps up (or receives nothing)", DIM)


def _source_row(block: Block, label: str, source: Source) -> None:
    block.row(label)
    block.pair("size", human_bytes(source.size))
    block.add(f"{SOURCE_NAMES[source.kind]}: ", LABEL)
    for word in source.how.split(" "):
        block.add(word + " ")


def _buffers(block: Block, s: Sock, limit: Limit | None, sysctls: Sysctls) -> None:
    """Where rb and tb come from, and the bandwidth-delay product against them."""
    sk = s.skmem
    if sk is None:
        return
    _source_row(block, "Receive buf", buffer_source(sk[SK_RCVBUF], "recv", sysctls))
    _source_row(block, "Send buf", buffer_source(sk[SK_SNDBUF], "send", sysctls))
    block.row("BDP")
    if limit is None or limit.bdp is None:
        block.add("unknown (no delivery rate or min_rtt yet)", DIM)
        return
    block.pair("delivery x min_rtt", human_bytes(limit.bdp))
    for label, size in (("rb", sk[SK_RCVBUF]), ("tb", sk[SK_SNDBUF])):
        block.pair(f"{label}/BDP", f"{size / limit.bdp:.1f}x" if limit.bdp else "-")


def flow_limit(
    info: TcpInfo,
    series: dict[str, Series] | None,
    rule: SendQueueFull | None,
    sock: Sock | None = None,
    peer: Sock | None = None,
    sysctls: Sysctls | None = None,
) -> Limit | None:
    """The rules' judgement from what the detail screen holds: the socket's history
    (its last CHRONO_WINDOW seconds), the local peer and the sysctls."""
    window = None
    if series:
        latest = max((t for values in series.values() for t, _ in values[-1:]), default=0.0)
        window = recent(series, latest - CHRONO_WINDOW)
    receiver = None
    if info.get("rwnd_limited") and peer is not None and sysctls is not None:
        receiver = receiver_of(peer, [f.kind for f in peer.flags], sysctls)
    skmem = None if sock is None else sock.skmem
    return send_limit(info, window, rule, skmem, sysctls, receiver)


def tcp_text(
    info: TcpInfo | None,
    width: int,
    series: dict[str, Series] | None = None,
    rule: SendQueueFull | None = None,
    sock: Sock | None = None,
    peer: Sock | None = None,
    sysctls: Sysctls | None = None,
) -> Text:
    """tcp_info by group, what limits the flow and (given `sock`) its buffers' sources."""
    block = Block("tcp_info", width)
    if info is None:
        block.add("  not reported for this socket", DIM)
        return block.text
    for title, fields in TCP_GROUPS:
        block.row(title)
        for name, label, formatter in fields:
            value = info.get(name)
            block.pair(label, "-" if value is None else formatter(value))
    limit = flow_limit(info, series, rule, sock, peer, sysctls)
    _limits(block, info, limit)
    if sock is not None:
        _receiving(block, sock)
        _buffers(block, sock, limit, sysctls or {})
    return block.text


def flags_text(s: Sock) -> Text:
    text = Text()
    text.append("Flags", LABEL)
    if not s.flags:
        text.append("  none: nothing looks wrong with this socket", DIM)
    for flag in flags_worst_first(s.flags):
        text.append("\n● ", SEVERITY_STYLES[flag.severity])
        text.append(f"{flag.severity.upper()} {flag.kind}", SEVERITY_STYLES[flag.severity])
        text.append(f"  for {human_duration(flag.since)}", DIM)  # since = seconds held
        text.append(f"\n  {printable(flag.reason)}")
        text.append("\n  advice: ", LABEL)
        text.append(printable(flag.advice))
    return text
