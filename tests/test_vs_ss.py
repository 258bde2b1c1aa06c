"""bufmon's sock_diag collector against `ss -tuanmie` on the same real, quiescent sockets.

One namespace of the test's own holds every state worth comparing. bufmon dumps it
before and after `ss` runs; every value ss printed must lie between the two dumps
(equal when the socket is quiet, inside the bracket for clocks such as lastsnd and
for the SYN retransmits of the clients an overflowing listener keeps dropping).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from scenes import DATAGRAMS, PAYLOAD, Scene

from bufmon.scenarios import Netns
from collectors.model import SKMEM_FIELDS, Sock, TcpInfo
from collectors.netns import NamespaceSet, entered

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2 ss"),
]

QUIET_S = 0.3  # delayed ACKs and the last segments settle well within this

Key = tuple[str, str, str, int, str, int]  # proto, state, local, lport, peer, pport


@pytest.fixture(scope="module")
def scene() -> Iterator[Scene]:
    with Netns("vsss") as ns:
        built = Scene(ns.name)
        try:
            with entered(f"/run/netns/{ns.name}"):
                built.build()
            time.sleep(QUIET_S)
            yield built
        finally:
            built.close()


# --- ss output ---------------------------------------------------------------------


@dataclass
class SsSock:
    key: Key
    recv_q: int
    send_q: int
    values: dict[str, str]  # "rtt" -> "0.11/0.212", "skmem" -> "(r0,rb131072,...)"
    words: set[str]  # bare words: ts, sack, app_limited, the congestion control name


def _endpoint(text: str) -> tuple[str, int]:
    """`[::1]:80`, `127.0.0.1%lo:80`, `*:*` -> ("::1", 80), ("127.0.0.1", 80), ("::", 0)."""
    addr, port = text.rsplit(":", 1)
    addr = addr.strip("[]").split("%", 1)[0]
    return ("::" if addr == "*" else addr), (0 if port == "*" else int(port))


RATE_KEYS = ("send", "pacing_rate", "delivery_rate")  # printed as "key VALUEbps"


def parse_ss(text: str) -> dict[Key, SsSock]:
    """Parse `ss -tuanmie`: a socket line, then its indented detail line(s)."""
    found: dict[Key, SsSock] = {}
    current: SsSock | None = None
    for line in text.splitlines()[1:]:
        tokens = line.split()
        if not line[:1].isspace():
            proto, state, recv_q, send_q, local, peer, *tokens = tokens
            key = (proto, state, *_endpoint(local), *_endpoint(peer))
            current = found[key] = SsSock(key, int(recv_q), int(send_q), {}, set())
        assert current is not None, f"detail line before any socket: {line!r}"
        words = iter(tokens)
        for token in words:
            if token in RATE_KEYS:
                current.values[token] = next(words)
            elif ":" in token:
                name, value = token.split(":", 1)
                current.values[name] = value
            else:
                current.words.add(token)
    return found


def run_ss(netns: str) -> dict[Key, SsSock]:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "ss", "-tuanmie"], capture_output=True, text=True, check=True
    )
    return parse_ss(out.stdout)


def _numbers(value: str) -> list[float]:
    """`0.11/0.212` -> [0.11, 0.212]; `4ms(100.0%)` -> [4]; `1bps/2bps` -> [1, 2]."""
    value = value.split("(", 1)[0]
    return [float(re.sub(r"[a-z]+$", "", part)) for part in re.split(r"[/,]", value)]


def _timer_ms(text: str) -> tuple[int, int]:
    """ss print_ms_timer text -> (ms, truncation): `59sec`, `1.234ms`, `2min3sec`, `140ms`."""
    m = re.fullmatch(r"(?:(\d+)min)?(?:(\d+)(?:sec|\.))?(?:(\d+)ms)?", text)
    assert m, f"unexpected timer text {text!r}"
    minutes, secs, msecs = (int(g or 0) for g in m.groups())
    trunc = 60_000 if minutes > 9 else 1000 if (minutes or secs > 9) else 0
    return (minutes * 60 + secs) * 1000 + msecs, trunc


# --- what ss prints, in bufmon's terms ------------------------------------------------

# ss key -> tcp_info fields, one per "/" or "," separated part of the value.
SS_FIELDS: dict[str, tuple[str, ...]] = {
    "wscale": ("snd_wscale", "rcv_wscale"),
    "rto": ("rto",),
    "backoff": ("backoff",),
    "rtt": ("rtt", "rttvar"),
    "ato": ("ato",),
    "mss": ("snd_mss",),
    "pmtu": ("pmtu",),
    "rcvmss": ("rcv_mss",),
    "advmss": ("advmss",),
    "cwnd": ("snd_cwnd",),
    "ssthresh": ("snd_ssthresh",),
    "bytes_sent": ("bytes_sent",),
    "bytes_retrans": ("bytes_retrans",),
    "bytes_acked": ("bytes_acked",),
    "bytes_received": ("bytes_received",),
    "segs_out": ("segs_out",),
    "segs_in": ("segs_in",),
    "data_segs_out": ("data_segs_out",),
    "data_segs_in": ("data_segs_in",),
    "lastsnd": ("last_data_sent",),
    "lastrcv": ("last_data_recv",),
    "lastack": ("last_ack_recv",),
    "pacing_rate": ("pacing_rate", "max_pacing_rate"),
    "delivery_rate": ("delivery_rate",),
    "delivered": ("delivered",),
    "delivered_ce": ("delivered_ce",),
    "busy": ("busy_time",),
    "rwnd_limited": ("rwnd_limited",),
    "sndbuf_limited": ("sndbuf_limited",),
    "unacked": ("unacked",),
    "retrans": ("retrans", "total_retrans"),
    "lost": ("lost",),
    "sacked": ("sacked",),
    "dsack_dups": ("dsack_dups",),
    "fackets": ("fackets",),
    "reordering": ("reordering",),
    "reord_seen": ("reord_seen",),
    "rcv_rtt": ("rcv_rtt",),
    "rcv_space": ("rcv_space",),
    "rcv_ssthresh": ("rcv_ssthresh",),
    "notsent": ("notsent_bytes",),
    "minrtt": ("min_rtt",),
    "snd_wnd": ("snd_wnd",),
    "rcv_ooopack": ("rcv_ooopack",),
}
US_AS_MS = {"rto", "rtt", "ato", "rcv_rtt", "minrtt"}  # printed with %g as us / 1000
US_AS_WHOLE_MS = {"busy", "rwnd_limited", "sndbuf_limited"}  # printed as us / 1000, integer
BYTES_AS_BITS = {"pacing_rate", "delivery_rate"}  # printed as bytes/s * 8
OPTION_WORDS = {"ts": 1, "sack": 2, "ecn": 8, "ecnseen": 16, "fastopen": 32}  # TCPI_OPT_*
# Printed by ss, not collected by bufmon (no INET_DIAG_CONG / BBRINFO / SKV6ONLY / SHUTDOWN
# request, no cgroup id); checked nowhere, listed so that a new ss key fails loudly.
NOT_COLLECTED = {"skmem", "bbr", "cgroup", "v6only", "dctcp"}
U32_NONE, U64_NONE = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
SKMEM_LETTERS = ("r", "rb", "t", "tb", "f", "w", "o", "bl", "d")  # SKMEM_FIELDS order


def _shown(key: str, info: TcpInfo, state: str) -> bool:
    """Whether ss would print `key` for this tcp_info (tcp_show_info/tcp_stats_print)."""
    g = info.get
    special: dict[str, Callable[[], bool]] = {
        "wscale": lambda: bool(g("options", 0) & 4),
        "rto": lambda: g("rto") not in (0, 3_000_000),
        "ssthresh": lambda: 0 < g("snd_ssthresh", 0) < 0xFFFF,
        "retrans": lambda: bool(g("retrans") or g("total_retrans")),
        "sacked": lambda: bool(g("sacked")) and state != "LISTEN",
        "reordering": lambda: g("reordering") != 3,
        "minrtt": lambda: g("min_rtt") not in (0, U32_NONE),
        "pacing_rate": lambda: g("pacing_rate") not in (0, U64_NONE),
        "busy": lambda: bool(g("busy_time")),
        "rwnd_limited": lambda: bool(g("busy_time") and g("rwnd_limited")),
        "sndbuf_limited": lambda: bool(g("busy_time") and g("sndbuf_limited")),
        "send": lambda: bool(g("rtt") and g("snd_mss") and g("snd_cwnd")),
    }
    if key in special:
        return special[key]()
    return g(SS_FIELDS[key][0]) not in (None, 0)


def _expected(key: str, info: TcpInfo) -> list[float]:
    """The numbers ss prints for `key`, computed from bufmon's tcp_info."""
    g = info.get
    if key == "send":
        return [g("snd_cwnd", 0) * g("snd_mss", 0) * 8_000_000 / g("rtt", 1)]
    values = [g(name) for name in SS_FIELDS[key]]
    assert None not in values, f"{key}: tcp_info lacks {SS_FIELDS[key]}"
    if key in US_AS_MS:
        return [v / 1000 for v in values]
    if key in US_AS_WHOLE_MS:
        return [v // 1000 for v in values]
    if key in BYTES_AS_BITS:
        return [v * 8 for v in values]
    return [float(v) for v in values]


def _tolerance(key: str, value: float) -> float:
    """%g keeps 6 significant digits; rates are printed with %.0f."""
    if key in US_AS_MS:
        return abs(value) * 1e-5 + 1e-9
    return 1.0 if key in RATE_KEYS else 0.0


def between(value: float, a: float, b: float, tol: float = 0.0) -> bool:
    return min(a, b) - tol <= value <= max(a, b) + tol


# --- comparisons: each returns the mismatches it found ---------------------------------


def _skmem(text: str) -> dict[str, int]:
    """`(r0,rb131072,...,d0)` -> {"r": 0, "rb": 131072, ..., "d": 0}."""
    parts = (re.fullmatch(r"([a-z]+)(\d+)", p) for p in text.strip("()").split(","))
    return {m.group(1): int(m.group(2)) for m in parts if m}


def check_queues(ss: SsSock, a: Sock, b: Sock) -> list[str]:
    bad = []
    if not between(ss.recv_q, a.recv_q, b.recv_q):
        bad.append(f"Recv-Q ss {ss.recv_q} bufmon {a.recv_q}..{b.recv_q}")
    if not between(ss.send_q, a.send_q, b.send_q):
        bad.append(f"Send-Q ss {ss.send_q} bufmon {a.send_q}..{b.send_q}")
    if "skmem" not in ss.values:
        if a.skmem is not None:
            bad.append(f"ss printed no skmem, bufmon has {a.skmem}")
        return bad
    printed = _skmem(ss.values["skmem"])
    if a.skmem is None or b.skmem is None:
        return [*bad, f"ss printed skmem {printed}, bufmon has none"]
    if sorted(printed) != sorted(SKMEM_LETTERS):
        bad.append(f"skmem letters {sorted(printed)}")
    for i, (letter, name) in enumerate(zip(SKMEM_LETTERS, SKMEM_FIELDS, strict=True)):
        if letter in printed and not between(printed[letter], a.skmem[i], b.skmem[i]):
            bad.append(f"skmem {name} ss {printed[letter]} bufmon {a.skmem[i]}..{b.skmem[i]}")
    return bad


ARROWS = {"<->", "<--", "-->", "---"}  # sk_shutdown as ss -e draws it
IDENTITY_KEYS = {"timer", "ino", "sk", "uid"}


def check_tcp_info(ss: SsSock, a: Sock, b: Sock) -> list[str]:
    if a.info is None or b.info is None:
        extra = set(ss.values) & (set(SS_FIELDS) | {"send"})
        return [f"ss printed {sorted(extra)}, bufmon has no tcp_info"] if extra else []
    bad = []
    for key in (*SS_FIELDS, "send"):
        if key not in ss.values:
            if _shown(key, a.info, a.state) and _shown(key, b.info, b.state):
                bad.append(f"{key}: bufmon has {_expected(key, a.info)}, ss printed nothing")
            continue
        low, high = _expected(key, a.info), _expected(key, b.info)
        for got, ea, eb in zip(_numbers(ss.values[key]), low, high, strict=False):
            if not between(got, ea, eb, _tolerance(key, max(ea, eb))):
                bad.append(f"{key}: ss {ss.values[key]} bufmon {ea}..{eb}")
    for word, bit in OPTION_WORDS.items():
        if (word in ss.words) != bool(a.info.get("options", 0) & bit):
            bad.append(f"option {word}: ss {word in ss.words} options {a.info.get('options')}")
    if ("app_limited" in ss.words) != bool(a.info.get("delivery_rate_app_limited")):
        bad.append("app_limited differs")
    return bad


def check_unknown(ss: SsSock) -> list[str]:
    """Keys this test neither compares nor knows to be uncollected fail loudly."""
    known = set(SS_FIELDS) | set(RATE_KEYS) | NOT_COLLECTED | IDENTITY_KEYS
    keys = sorted(set(ss.values) - known)
    words = ss.words - set(OPTION_WORDS) - {"app_limited"} - ARROWS
    if len(words) > 1:  # one bare word is the congestion control name
        keys.append(f"words {sorted(words)}")
    return [f"ss printed what this test does not know: {keys}"] if keys else []


def check_identity(ss: SsSock, a: Sock, b: Sock) -> list[str]:
    bad = []
    if int(ss.values["ino"]) != a.inode:
        bad.append(f"inode ss {ss.values['ino']} bufmon {a.inode}")
    if int(ss.values["sk"], 16) != a.cookie or a.cookie != b.cookie:
        bad.append(f"cookie ss {ss.values['sk']} bufmon {a.cookie:x}/{b.cookie:x}")
    if int(ss.values.get("uid", "0")) != a.uid:
        bad.append(f"uid ss {ss.values.get('uid', '0')} bufmon {a.uid}")
    if "timer" not in ss.values:
        if a.timer != "off" and b.timer != "off":
            bad.append(f"ss shows no timer, bufmon {a.timer}")
        return bad
    name, expires, retrans = ss.values["timer"].strip("()").split(",")
    # A retransmit between the two dumps restarts the timer: compare with the dump(s)
    # that saw the same retransmit count.
    same = [s for s in (a, b) if s.retrans == int(retrans) and s.timer == name]
    if not same:
        return [*bad, f"timer ss {ss.values['timer']} bufmon {a.timer}/{a.retrans} "
                      f"{b.timer}/{b.retrans}"]  # fmt: skip
    ms, trunc = _timer_ms(expires)
    low = min(s.timer_expires_ms for s in same) if len(same) == 2 or same[0] is b else 0
    high = max(s.timer_expires_ms for s in same) if len(same) == 2 or same[0] is a else 1 << 32
    if not (low <= ms + trunc and ms <= high):
        bad.append(f"timer expires ss {expires} bufmon {low}..{high}")
    return bad


# --- fixtures and tests ----------------------------------------------------------------


@dataclass
class Views:
    ss: dict[Key, SsSock]
    before: dict[Key, Sock]
    after: dict[Key, Sock]
    ports: dict[str, int]


def _by_key(socks: list[Sock]) -> dict[Key, Sock]:
    keyed = {
        (s.proto, s.state, s.local_addr, s.local_port, s.peer_addr, s.peer_port): s for s in socks
    }
    assert len(keyed) == len(socks), "two sockets share proto, state and 4-tuple"
    return keyed


@pytest.fixture(scope="module")
def views(scene: Scene) -> Views:
    nsset = NamespaceSet(scene.netns)
    try:
        before = _by_key(nsset.dump())
        ss = run_ss(scene.netns)
        after = _by_key(nsset.dump())
    finally:
        nsset.close()
    return Views(ss, before, after, scene.ports)


def _compare(views: Views, check: Callable[..., list[str]]) -> None:
    bad = []
    for key, ss in views.ss.items():
        bad += [f"{key}: {problem}" for problem in check(ss, views.before[key], views.after[key])]
    assert not bad, "\n".join(bad)


def test_same_sockets_as_ss(views: Views) -> None:
    assert set(views.before) == set(views.ss) == set(views.after)


def test_queues_and_skmem_match_ss(views: Views) -> None:
    _compare(views, check_queues)


def test_tcp_info_matches_ss(views: Views) -> None:
    _compare(views, check_tcp_info)


def test_inode_cookie_uid_timer_match_ss(views: Views) -> None:
    _compare(views, check_identity)


def test_ss_prints_nothing_unchecked(views: Views) -> None:
    bad = [f"{key}: {p}" for key, ss in views.ss.items() for p in check_unknown(ss)]
    assert not bad, "\n".join(bad)


def _find(views: Views, proto: str, state: str, **where: object) -> list[Sock]:
    return [
        s
        for s in views.before.values()
        if s.proto == proto and s.state == state
        and all(getattr(s, k) == v for k, v in where.items())
    ]  # fmt: skip


def test_scene_covers_every_state(views: Views) -> None:
    """The comparison above is only worth what the scene holds: check the scene."""
    full = _find(views, "tcp", "LISTEN", local_port=views.ports["full"])
    assert [(s.recv_q, s.send_q) for s in full] == [(3, 2)]
    assert full[0].skmem is not None and full[0].skmem[8] >= 5  # dropped SYNs
    assert len(_find(views, "tcp", "SYN-SENT")) == 5
    for addr in ("127.0.0.1", "::1"):
        assert _find(views, "tcp", "ESTAB", local_addr=addr, recv_q=PAYLOAD)
        assert _find(views, "tcp", "ESTAB", local_addr=addr, recv_q=PAYLOAD // 2)
        udp_rx = _find(views, "udp", "UNCONN", local_addr=addr, peer_port=0)
        assert max(s.recv_q for s in udp_rx) > DATAGRAMS * 1000  # truesize, not payload
        connected = _find(views, "udp", "ESTAB", local_addr=addr)
        assert len(connected) == 1 and connected[0].recv_q > DATAGRAMS * 1000
    assert _find(views, "tcp", "CLOSE-WAIT", recv_q=1)  # the FIN counts in Recv-Q
    assert _find(views, "tcp", "FIN-WAIT-2")
    tw = _find(views, "tcp", "TIME-WAIT")
    assert len(tw) == 1 and tw[0].skmem is None and tw[0].info is None and tw[0].inode == 0


def test_address_format(views: Views) -> None:
    """Plain addresses as ss prints them, without brackets or scope."""
    ports = views.ports
    dual = _find(views, "tcp", "LISTEN", local_port=ports["dual_listen"])
    assert [(s.family, s.local_addr, s.peer_addr, s.peer_port) for s in dual] == [
        ("inet6", "::", "::", 0)
    ]
    v4 = _find(views, "tcp", "LISTEN", local_port=ports["v4_listen"])
    assert [(s.family, s.local_addr, s.peer_addr, s.peer_port) for s in v4] == [
        ("inet", "0.0.0.0", "0.0.0.0", 0)
    ]
    mapped = [s for s in views.before.values() if s.local_addr == "::ffff:127.0.0.1"]
    # The dual-stack server side and the v4-mapped client, both AF_INET6.
    assert len(mapped) == 2
    assert {(s.family, s.peer_addr) for s in mapped} == {("inet6", "::ffff:127.0.0.1")}
    assert not [s for s in views.before.values() if {"[", "%"} & set(s.local_addr + s.peer_addr)]
