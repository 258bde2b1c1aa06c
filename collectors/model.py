"""The snapshot model: what every consumer (TUI, JSON, exporter, recorder) reads.

Sockets are plain slotted objects; tcp_info stays a compact tuple decoded by length
and becomes a dict only when a consumer asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Self

from collectors.tcpinfo import TcpInfo

SCHEMA_VERSION = 1

__all__ = [
    "IDLE",
    "Flag",
    "Process",
    "Rates",
    "Snapshot",
    "Sock",
    "SystemFacts",
    "TcpInfo",
    "UnixSock",
]

SKMEM_FIELDS = (
    "rmem_alloc",
    "rcvbuf",
    "wmem_alloc",
    "sndbuf",
    "fwd_alloc",
    "wmem_queued",
    "optmem",
    "backlog",
    "drops",
)
(SK_RMEM, SK_RCVBUF, SK_WMEM, SK_SNDBUF, SK_FWD, SK_WQUEUED, SK_OPTMEM, SK_BACKLOG, SK_DROPS) = (
    range(9)
)

# Kernel TCP states (include/net/tcp_states.h) under the names ss prints.
STATE_NAMES = {
    1: "ESTAB",
    2: "SYN-SENT",
    3: "SYN-RECV",
    4: "FIN-WAIT-1",
    5: "FIN-WAIT-2",
    6: "TIME-WAIT",
    7: "UNCONN",
    8: "CLOSE-WAIT",
    9: "LAST-ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "SYN-RECV",  # TCP_NEW_SYN_RECV: request sockets
}

UNIX_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}  # SOCK_* as unix_diag reports them

TIMER_NAMES = {0: "off", 1: "on", 2: "keepalive", 3: "timewait", 4: "persist"}

FLAG_KINDS = frozenset(
    {
        "stalled_reader",
        "slow_reader",
        "peer_zero_window",
        "send_queue_full",
        "rcvbuf_overrun",
        "accept_queue_full",
        "syn_backlog",
        "udp_drops",
        "memory_pressure",
        "port_exhaustion",
        "nagle_hint",
        "dgram_queue_full",
        "buffer_limited",
        "close_wait",
        "orphan_sockets",
    }
)
SEVERITIES = ("info", "warning", "critical")
SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}


class Process(NamedTuple):
    pid: int
    comm: str
    user: str

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "comm": self.comm, "user": self.user}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Process:
        return cls(doc["pid"], doc["comm"], doc["user"])


class Flag:
    """One verdict of the diagnosis on a socket or the system.

    `reason` and `advice` are either given, or built by `words()` the first time they
    are read: a refresh that raises thousands of flags builds only the texts someone
    shows, and each with the numbers of the sample the flag belongs to."""

    __slots__ = ("_text", "_words", "kind", "severity", "since")

    def __init__(
        self,
        kind: str,
        severity: str,
        since: float,
        reason: str = "",
        advice: str = "",
        words: Callable[[], tuple[str, str]] | None = None,
    ) -> None:
        self.kind = kind
        self.severity = severity
        self.since = since
        self._text = (reason, advice)
        self._words = words

    def _built(self) -> tuple[str, str]:
        words = self._words
        if words is not None:
            self._text = words()
            self._words = None
        return self._text

    @property
    def reason(self) -> str:
        return self._built()[0]

    @property
    def advice(self) -> str:
        return self._built()[1]

    def _fields(self) -> tuple[str, str, float, str, str]:
        return (self.kind, self.severity, self.since, *self._built())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Flag) and self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable text: not hashable, like before

    def __repr__(self) -> str:
        return "Flag(kind={!r}, severity={!r}, since={!r}, reason={!r}, advice={!r})".format(
            *self._fields()
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "since": round(self.since, 1),
            "reason": self.reason,
            "advice": self.advice,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Flag:
        return cls(doc["kind"], doc["severity"], doc["since"], doc["reason"], doc["advice"])


DELIVERY_RATE = "delivery_rate"  # the tcp_info field that `rates` shows as it is, last


class Rates(NamedTuple):
    """Per-second rates between a socket's last two samples (bufmon.rates measures
    them)."""

    rx_bytes_per_s: float  # bytes_received
    tx_bytes_per_s: float  # bytes_acked
    retrans_per_s: float  # segments (total_retrans)
    retrans_share: float  # retransmitted / segments sent (segs_out); 0 when none sent

    def to_json(self, info: TcpInfo | None) -> dict[str, Any]:
        """The JSON `rates`, with the delivery rate the kernel reports (bytes/s)."""
        return {
            "rx_bytes_per_s": round(self.rx_bytes_per_s),
            "tx_bytes_per_s": round(self.tx_bytes_per_s),
            "retrans_per_s": round(self.retrans_per_s, 2),
            "retrans_share": round(self.retrans_share, 4),
            DELIVERY_RATE: None if info is None else info.get(DELIVERY_RATE),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> Rates | None:
        if doc is None:
            return None
        return cls(
            doc["rx_bytes_per_s"], doc["tx_bytes_per_s"], doc["retrans_per_s"], doc["retrans_share"]
        )


IDLE = Rates(0.0, 0.0, 0.0, 0.0)  # shared by every socket whose counters did not move


class JsonParts:
    """How Sock.to_json writes a socket's nested parts: here as fresh dicts and lists,
    which any JSON encoder takes. bufmon.jsonparts shares the parts that sockets have
    in common, pre-encoded, for the fast `--json` outputs; both give the same JSON."""

    def skmem(self, skmem: tuple[int, ...] | None) -> Any:
        return None if skmem is None else dict(zip(SKMEM_FIELDS, skmem, strict=True))

    def tcp_info(self, info: TcpInfo) -> Any:
        return info.to_json()

    def rates(self, rates: Rates, info: TcpInfo | None) -> Any:
        return rates.to_json(info)

    def process(self, process: Process | None) -> Any:
        return None if process is None else process.to_json()

    def flags(self, flags: Sequence[Flag]) -> Any:
        return [f.to_json() for f in flags]


PLAIN = JsonParts()


def listener_fills(recv_q: int, send_q: int) -> tuple[float | None, None]:
    """A listener's (receive, send) fullness: the connections waiting to be accepted
    against its backlog; it sends nothing."""
    return (recv_q / send_q if send_q else None), None


def buffer_fills(proto: str, skmem: tuple[int, ...]) -> tuple[float | None, float | None]:
    """A socket's (receive, send) fullness against its buffers, None where a buffer is 0.
    Receive: r / rb (none for UNIX sockets: what one receives is charged to its senders).
    Send: wmem_queued / sndbuf; UDP and UNIX: wmem_alloc / sndbuf (what the peer has
    not read yet)."""
    rcvbuf, sndbuf = skmem[SK_RCVBUF], skmem[SK_SNDBUF]
    recv = skmem[SK_RMEM] / rcvbuf if rcvbuf and proto != "unix" else None
    if not sndbuf:
        return recv, None
    used = skmem[SK_WMEM] if proto in ("udp", "unix") else skmem[SK_WQUEUED]
    return recv, used / sndbuf


def queue_fills(
    proto: str, state: str, recv_q: int, send_q: int, skmem: tuple[int, ...] | None
) -> tuple[float | None, float | None]:
    """Sock.recv_fill and send_fill: a listener's listener_fills, else buffer_fills;
    None without skmem."""
    if state == "LISTEN":
        return listener_fills(recv_q, send_q)
    return (None, None) if skmem is None else buffer_fills(proto, skmem)


class Sock:
    """One socket as sock_diag reports it, plus what bufmon adds (process, flags)."""

    __slots__ = (
        "proto",
        "family",
        "state",
        "local_addr",
        "local_port",
        "peer_addr",
        "peer_port",
        "recv_q",
        "send_q",
        "skmem",
        "info",
        "timer",
        "timer_expires_ms",
        "retrans",
        "uid",
        "inode",
        "cookie",
        "netns",
        "netns_name",
        "process",
        "flags",
        "closed",
        "segs_in",
        "listener",
        "rates",
        "recv_fill",
        "send_fill",
    )

    def __init__(
        self,
        proto: str,
        family: str,
        state: str,
        local_addr: str,
        local_port: int,
        peer_addr: str,
        peer_port: int,
        recv_q: int,
        send_q: int,
        skmem: tuple[int, ...] | None,
        info: TcpInfo | None,
        timer: str,
        timer_expires_ms: int,
        retrans: int,
        uid: int,
        inode: int,
        cookie: int,
        netns: str = "host",
        segs_in: int | None = None,
    ) -> None:
        self.proto = proto
        self.family = family
        self.state = state
        self.local_addr = local_addr
        self.local_port = local_port
        self.peer_addr = peer_addr
        self.peer_port = peer_port
        self.recv_q = recv_q
        self.send_q = send_q
        self.skmem = skmem
        self.info = info
        self.timer = timer
        self.timer_expires_ms = timer_expires_ms
        self.retrans = retrans
        self.uid = uid
        self.inode = inode
        self.cookie = cookie
        self.netns = netns
        self.netns_name: str | None = None  # "docker:web" (Snapshot names it); not in JSON
        # tcp_info segs_in, decoded up front by the collector: the change signal
        self.segs_in = segs_in if segs_in is not None or info is None else info.get("segs_in")
        self.process: Process | None = None
        self.flags: Sequence[Flag] = ()  # replaced, never appended to: no list per socket
        self.closed = False
        # the listener whose accept queue holds this connection (not accepted yet)
        self.listener: Sock | None = None
        self.rates: Rates | None = None  # set by bufmon.rates from the sample before
        self.refill()

    # what a UNIX socket adds to these fields (UnixSock.unix_fields); None for others
    unix_fields: tuple[Any, ...] | None = None

    @property
    def key(self) -> tuple[str, int]:
        """Stable identity across refreshes: cookies are unique per namespace."""
        return (self.netns, self.cookie)

    @property
    def is_listener(self) -> bool:
        return self.state == "LISTEN"

    def skmem_value(self, index: int) -> int | None:
        return None if self.skmem is None else self.skmem[index]

    def refill(self) -> None:
        """Set the fills from the queues and skmem (after a change to them)."""
        self.recv_fill, self.send_fill = queue_fills(
            self.proto, self.state, self.recv_q, self.send_q, self.skmem
        )

    def worst_severity(self) -> int:
        if not self.flags:  # most sockets: no generator to make (sorting 40,000 asks each)
            return 0
        return max(SEVERITY_RANK[f.severity] for f in self.flags)

    def to_json(self, parts: JsonParts = PLAIN) -> dict[str, Any]:
        """This socket's JSON object; `parts` writes the nested parts (see JsonParts)."""
        info = self.info
        return {
            "proto": self.proto,
            "family": self.family,
            "state": self.state,
            "local_addr": self.local_addr,
            "local_port": self.local_port,
            "peer_addr": self.peer_addr,
            "peer_port": self.peer_port,
            "recv_q": self.recv_q,
            "send_q": self.send_q,
            "skmem": parts.skmem(self.skmem),
            "tcp_info": None if info is None else parts.tcp_info(info),
            "rates": None if self.rates is None else parts.rates(self.rates, info),
            "timer": self.timer,
            "uid": self.uid,
            "inode": self.inode,
            "cookie": self.cookie,
            "netns": self.netns,
            "process": parts.process(self.process),
            "flags": parts.flags(self.flags),
            "closed": self.closed,
            "accept_queue_of": None
            if self.listener is None
            else self.listener.listener_json(parts),
        }

    def listener_json(self, parts: JsonParts = PLAIN) -> dict[str, Any]:
        """This listener as named by the connections waiting in its accept queue."""
        return {
            "local_addr": self.local_addr,
            "local_port": self.local_port,
            "cookie": self.cookie,
            "process": parts.process(self.process),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Sock:
        """The socket a to_json() document describes; its to_json() gives `doc` back.
        Fields the document does not hold (timer expiry, retransmits) are 0."""
        if doc["proto"] == "unix":
            return UnixSock.from_json(doc)
        skmem, info = doc["skmem"], doc["tcp_info"]
        sock = cls(
            doc["proto"],
            doc["family"],
            doc["state"],
            doc["local_addr"],
            doc["local_port"],
            doc["peer_addr"],
            doc["peer_port"],
            doc["recv_q"],
            doc["send_q"],
            None if skmem is None else tuple(skmem[name] for name in SKMEM_FIELDS),
            None if info is None else TcpInfo.from_json(info),
            doc["timer"],
            0,
            0,
            doc["uid"],
            doc["inode"],
            doc["cookie"],
            doc["netns"],
        )
        return sock.with_json_objects(doc)

    def with_json_objects(self, doc: dict[str, Any]) -> Self:
        """This socket with the process, flags, rates and closed mark of its document."""
        proc = doc["process"]
        self.rates = Rates.from_json(doc["rates"])
        self.process = None if proc is None else Process.from_json(proc)
        self.flags = [Flag.from_json(f) for f in doc["flags"]]
        self.closed = doc["closed"]
        return self


class UnixSock(Sock):
    """A UNIX domain socket: a path instead of addresses, the peer known by its inode.

    local_addr is the bound path ("" when unbound; abstract names as "@name"), the
    ports are 0. For a listener, Recv-Q/Send-Q are pending connections and backlog;
    otherwise the bytes in the receive queue (a datagram socket: the first datagram's
    length only) and the send buffer memory held by what this socket sent and its peer
    has not read yet. Data a socket receives is charged to its senders, so r stays 0."""

    __slots__ = ("icons", "peer_inode", "peer_process", "senders_q", "sock_type")

    def __init__(
        self,
        state: str,
        sock_type: str,
        path: str,
        peer_inode: int,
        recv_q: int,
        send_q: int,
        skmem: tuple[int, ...] | None,
        uid: int,
        inode: int,
        cookie: int,
        netns: str = "host",
        icons: tuple[int, ...] = (),
    ) -> None:
        Sock.__init__(
            self, "unix", "unix", state, path, 0, "", 0, recv_q, send_q, skmem, None,
            "off", 0, 0, uid, inode, cookie, netns,
        )  # fmt: skip
        self.sock_type = sock_type
        self.peer_inode = peer_inode
        self.icons = icons  # inodes of the clients waiting in a listener's queue
        self.peer_process: Process | None = None  # set by unixdiag.link_peers
        self.senders_q = 0  # Send-Q of the sockets whose peer this one is

    @property
    def path(self) -> str | None:
        return self.local_addr or None

    @property
    def unix_fields(self) -> tuple[Any, ...]:  # type: ignore[override]
        """sock_type, peer_inode, icons, senders_q, peer_process."""
        return (self.sock_type, self.peer_inode, self.icons, self.senders_q, self.peer_process)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> UnixSock:
        skmem, peer = doc["skmem"], doc["peer_process"]
        sock = cls(
            doc["state"],
            doc["type"],
            doc["path"] or "",
            doc["peer_inode"],
            doc["recv_q"],
            doc["send_q"],
            None if skmem is None else tuple(skmem[name] for name in SKMEM_FIELDS),
            doc["uid"],
            doc["inode"],
            doc["cookie"],
            doc["netns"],
            tuple(doc["pending_inodes"]),
        )
        sock.peer_addr = doc["peer_addr"] or ""
        sock.senders_q = doc["senders_q"]
        sock.peer_process = None if peer is None else Process.from_json(peer)
        return sock.with_json_objects(doc)

    def to_json(self, parts: JsonParts = PLAIN) -> dict[str, Any]:
        out = Sock.to_json(self, parts)
        out["local_addr"] = self.path
        out["peer_addr"] = self.peer_addr or None
        out["type"] = self.sock_type
        out["path"] = self.path
        out["peer_inode"] = self.peer_inode
        out["pending_inodes"] = list(self.icons)
        out["senders_q"] = self.senders_q
        out["peer_process"] = parts.process(self.peer_process)
        return out


class SystemFacts:
    """Host facts read each refresh: counters (with per-refresh deltas) and sysctls.
    (Plain classes here, not dataclasses: every command loads this module, and the
    dataclasses module with what it imports costs ~15 ms of start-up.)"""

    __slots__ = ("counters", "deltas", "interval", "sockstat", "sysctls")

    def __init__(
        self,
        counters: dict[str, int] | None = None,
        deltas: dict[str, int] | None = None,
        interval: float = 0.0,
        sockstat: dict[str, int] | None = None,
        sysctls: dict[str, list[int]] | None = None,
    ) -> None:
        self.counters = counters if counters is not None else {}  # "TcpExt.ListenOverflows"
        self.deltas = deltas if deltas is not None else {}  # change since last refresh
        self.interval = interval  # seconds the deltas cover
        self.sockstat = sockstat if sockstat is not None else {}  # "TCP.mem", "TCP.tw"
        self.sysctls = sysctls if sysctls is not None else {}  # "tcp_mem": [low, pressure, high]

    def to_json(self) -> dict[str, Any]:
        return {
            "counters": self.counters,
            "deltas": self.deltas,
            "interval": round(self.interval, 3),
            "sockstat": self.sockstat,
            "sysctls": self.sysctls,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SystemFacts:
        return cls(doc["counters"], doc["deltas"], doc["interval"], doc["sockstat"], doc["sysctls"])


def netns_shown(ns: dict[str, Any]) -> str | None:
    """A namespace's name as shown: its label's kind with the runtime's name
    ("docker:web", "pod:default/nginx"), None when the runtime gave no name."""
    name = ns.get("name")  # recordings made before names existed have none
    if not name:
        return None
    return f"{str(ns['label']).partition(':')[0]}:{name}"


class Snapshot:
    """One refresh: every socket, the host's facts and the system's flags."""

    __slots__ = ("host", "namespaces", "notices", "sockets", "system", "system_flags", "time")

    def __init__(
        self,
        time: float,
        host: str,
        sockets: list[Sock],
        system: SystemFacts,
        system_flags: list[Flag] | None = None,
        notices: list[str] | None = None,
        namespaces: list[dict[str, Any]] | None = None,
    ) -> None:
        self.time = time
        self.host = host
        self.sockets = sockets
        self.system = system
        self.system_flags = system_flags if system_flags is not None else []
        self.notices = notices if notices is not None else []  # e.g. "not root: ..."
        # label, inode, holder, name of each namespace read
        self.namespaces = namespaces if namespaces is not None else []
        # each socket of a named container or pod namespace gets that name to show
        names = {ns["label"]: shown for ns in self.namespaces if (shown := netns_shown(ns))}
        if names:
            for s in self.sockets:
                s.netns_name = names.get(s.netns)

    def to_json(self, sockets: list[Sock] | None = None) -> dict[str, Any]:
        """The JSON document; `sockets` replaces the full list (e.g. a filtered one)."""
        return {
            "version": SCHEMA_VERSION,
            "time": self.time,
            "host": self.host,
            "sockets": [s.to_json() for s in (self.sockets if sockets is None else sockets)],
            "system": self.system.to_json(),
            "system_flags": [f.to_json() for f in self.system_flags],
            "notices": self.notices,
            "namespaces": self.namespaces,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Snapshot:
        """The snapshot a to_json() document describes; its to_json() gives `doc` back."""
        return cls(
            time=doc["time"],
            host=doc["host"],
            sockets=[Sock.from_json(s) for s in doc["sockets"]],
            system=SystemFacts.from_json(doc["system"]),
            system_flags=[Flag.from_json(f) for f in doc["system_flags"]],
            notices=list(doc["notices"]),
            namespaces=list(doc["namespaces"]),
        )
