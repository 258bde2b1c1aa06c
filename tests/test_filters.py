"""The filter language: pure logic over Sock objects, so these tests need no kernel sockets."""

from __future__ import annotations

import ipaddress
from typing import Any

import factories
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bufmon import filters
from bufmon.filters import FilterError, compile_filter, select, with_unix
from collectors.model import FLAG_KINDS, Flag, Process, Sock, TcpInfo

KIB, MIB = 1024, 1024 * 1024


def tcp_info(**fields: int) -> TcpInfo:
    return TcpInfo.from_fields(**fields)


def make_sock(
    *,
    process: Process | None = None,
    flags: tuple[tuple[str, str], ...] = (),
    rtt_us: int | None = 20_000,
    skmem: tuple[int, ...] | None = (0, 131072, 0, 16384, 0, 0, 0, 0, 0),
    **fields: Any,
) -> Sock:
    """An established TCP socket 10.1.2.3:40000 -> 192.168.7.9:443 unless told otherwise."""
    values: dict[str, Any] = {
        "skmem": skmem,
        "info": None if rtt_us is None else tcp_info(rto=204000, rtt=rtt_us),
        "local_addr": "10.1.2.3",
        "local_port": 40000,
        "peer_addr": "192.168.7.9",
        "peer_port": 443,
        "uid": 1000,
        "inode": 4242,
        "cookie": 7,
    }
    values.update(fields)
    return factories.make_sock(
        process=process,
        flags=[Flag(kind, severity, 0.0, "why", "what to do") for kind, severity in flags],
        **values,
    )


NGINX = Process(pid=812, comm="nginx", user="www-data")
V6 = {"family": "inet6", "local_addr": "::1", "peer_addr": "fe80::1:2"}
MAPPED = {"family": "inet6", "local_addr": "::ffff:10.9.8.7", "peer_addr": "::ffff:172.16.0.1"}


def check(expr: str, sock: Sock, expected: bool) -> None:
    assert compile_filter(expr)(sock) is expected, expr


@pytest.mark.parametrize(
    ("expr", "fields", "expected"),
    [
        ("proto:tcp", {}, True),
        ("proto:TCP", {}, True),
        ("proto:udp", {}, False),
        ("proto:udp", {"proto": "udp", "state": "UNCONN"}, True),
        ("PROTO:tcp", {}, True),
        ("family:inet", {}, True),
        ("family:4", {}, True),
        ("family:6", {}, False),
        ("family:inet6", V6, True),
        ("family:6", V6, True),
    ],
)
def test_proto_and_family(expr: str, fields: dict[str, Any], expected: bool) -> None:
    check(expr, make_sock(**fields), expected)


@pytest.mark.parametrize(
    ("expr", "state", "expected"),
    [
        ("state:estab", "ESTAB", True),
        ("state:ESTAB", "ESTAB", True),
        ("state:established", "ESTAB", True),
        ("state:listen", "ESTAB", False),
        ("state:Listen", "LISTEN", True),
        ("state:time-wait", "TIME-WAIT", True),
        ("state:time_wait", "TIME-WAIT", True),
        ("state:timewait", "TIME-WAIT", True),
        ("state:tw", "TIME-WAIT", True),
        ("state:tw", "CLOSE-WAIT", False),
        ("state:syn-recv", "SYN-RECV", True),
        ("state:close-wait", "CLOSE-WAIT", True),
        ("state:fin-wait-1", "FIN-WAIT-1", True),
        ("state:fin-wait-1", "FIN-WAIT-2", False),
        ("state:unconn", "UNCONN", True),
    ],
)
def test_state(expr: str, state: str, expected: bool) -> None:
    check(expr, make_sock(state=state), expected)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("port:443", True),
        ("port:40000", True),
        ("port:80", False),
        ("sport:40000", True),
        ("sport:443", False),
        ("dport:443", True),
        ("dport:40000", False),
        ("port:0", False),
        ("port:65535", False),
    ],
)
def test_ports(expr: str, expected: bool) -> None:
    check(expr, make_sock(), expected)


@pytest.mark.parametrize(
    ("expr", "fields", "expected"),
    [
        ("addr:10.1.2.3", {}, True),
        ("addr:192.168.7.9", {}, True),
        ("addr:10.1.2.4", {}, False),
        ("addr:10.0.0.0/8", {}, True),
        ("addr:192.168.0.0/16", {}, True),
        ("addr:172.16.0.0/12", {}, False),
        ("addr:10.1.2.3/8", {}, True),  # host bits are forgiven
        ("addr:0.0.0.0/0", {}, True),
        ("addr:::/0", {}, False),  # an IPv6 network never matches IPv4 addresses
        ("src:10.0.0.0/8", {}, True),
        ("src:192.168.0.0/16", {}, False),
        ("dst:192.168.0.0/16", {}, True),
        ("dst:10.0.0.0/8", {}, False),
        ("addr:::1", V6, True),
        ("addr:0:0::1", V6, True),  # compared as addresses, not as text
        ("addr:fe80::/10", V6, True),
        ("src:fe80::/10", V6, False),
        ("dst:FE80::1:2", V6, True),
        ("addr:10.0.0.0/8", V6, False),
        ("addr:10.0.0.0/8", MAPPED, True),  # v4-mapped addresses meet IPv4 networks
        ("addr:10.9.8.7", MAPPED, True),
        ("dst:172.16.0.0/12", MAPPED, True),
        ("src:172.16.0.0/12", MAPPED, False),
        ("addr:::ffff:10.9.8.7", MAPPED, True),
        ("addr:0.0.0.0/0", {"local_addr": "*", "peer_addr": "*"}, False),
        ("src:0.0.0.0", {"local_addr": "0.0.0.0"}, True),
    ],
)
def test_addresses(expr: str, fields: dict[str, Any], expected: bool) -> None:
    check(expr, make_sock(**fields), expected)


def test_addresses_are_parsed_once_and_the_cache_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[str] = []
    real_parse = ipaddress.ip_address

    def counting_parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        parsed.append(text)
        return real_parse(text)

    monkeypatch.setattr(ipaddress, "ip_address", counting_parse)
    socks = [make_sock(local_addr=f"10.0.{n % 2}.{n}") for n in range(6)]
    cached = compile_filter("src:10.0.0.0/24")
    for _ in range(3):
        assert [cached(sock) for sock in socks] == [True, False] * 3
    assert len(parsed) == 6  # each distinct address parsed once

    monkeypatch.setattr(filters, "_CACHE_LIMIT", 2)
    bounded = compile_filter("src:10.0.0.0/24")
    for _ in range(3):
        assert [bounded(sock) for sock in socks] == [True, False] * 3
    assert len(parsed) == 6 + 18  # a full cache is cleared, so cycling addresses re-parse


@pytest.mark.parametrize(
    ("expr", "process", "expected"),
    [
        ("proc:nginx", NGINX, True),
        ("proc:NGIN", NGINX, True),  # case-insensitive substring
        ("proc:gin", NGINX, True),
        ("proc:apache", NGINX, False),
        ("proc:nginx", None, False),
        ("pid:812", NGINX, True),
        ("pid:813", NGINX, False),
        ("pid:812", None, False),
        ("user:www-data", NGINX, True),
        ("user:WWW-DATA", NGINX, False),  # user names are case-sensitive
        ("user:1000", None, True),  # a uid matches the socket's owner
        ("user:0", NGINX, False),
        ("user:nobody-such-user", None, False),
    ],
)
def test_process_fields(expr: str, process: Process | None, expected: bool) -> None:
    check(expr, make_sock(process=process), expected)


def test_user_name_matches_socket_owner_without_process() -> None:
    check("user:root", make_sock(uid=0), True)
    check("user:root", make_sock(uid=1000), False)


@pytest.mark.parametrize(
    ("expr", "netns", "expected"),
    [
        ("netns:host", "host", True),
        ("netns:hos", "host", False),
        ("netns:bufmon-a", "bufmon-a", True),
        ("netns:bufmon-*", "bufmon-a", True),
        ("netns:bufmon-*", "host", False),
        ("netns:*-a", "bufmon-a", True),
        ("netns:*", "anything", True),
    ],
)
def test_netns(expr: str, netns: str, expected: bool) -> None:
    check(expr, make_sock(netns=netns), expected)


STALLED_WARN = (("stalled_reader", "warning"),)
TWO_FLAGS = (("slow_reader", "info"), ("peer_zero_window", "critical"))


@pytest.mark.parametrize(
    ("expr", "flags", "expected"),
    [
        ("flag:any", STALLED_WARN, True),
        ("flag:any", (), False),
        ("flag:stalled_reader", STALLED_WARN, True),
        ("flag:stalled-reader", STALLED_WARN, True),
        ("flag:peer_zero_window", STALLED_WARN, False),
        ("flag:peer_zero_window", TWO_FLAGS, True),
        ("flag:info", STALLED_WARN, True),  # a severity means that one or worse
        ("flag:warning", STALLED_WARN, True),
        ("flag:critical", STALLED_WARN, False),
        ("flag:critical", TWO_FLAGS, True),
        ("flag:Warning", TWO_FLAGS, True),
        ("flag:info", (), False),
    ],
)
def test_flags(expr: str, flags: tuple[tuple[str, str], ...], expected: bool) -> None:
    check(expr, make_sock(flags=flags), expected)


@pytest.mark.parametrize(
    ("expr", "recv_q", "expected"),
    [
        ("recvq>64k", 64 * KIB, False),
        ("recvq>=64k", 64 * KIB, True),
        ("recvq>64K", 64 * KIB + 1, True),
        ("recvq>64kb", 64 * KIB + 1, True),
        ("recvq>64KiB", 64 * KIB + 1, True),
        ("recvq<1M", MIB - 1, True),
        ("recvq<1mb", MIB, False),
        ("recvq<=1MiB", MIB, True),
        ("recvq=1G", 1024 * MIB, True),
        ("recvq=1gib", 1024 * MIB - 1, False),
        ("recvq!=0", 0, False),
        ("recvq!=0", 1, True),
        ("recvq=100", 100, True),
        ("recvq=100b", 100, True),
        ("recvq>1.5k", 1536, False),
        ("recvq>1.5k", 1537, True),
    ],
)
def test_recvq_units_and_operators(expr: str, recv_q: int, expected: bool) -> None:
    check(expr, make_sock(recv_q=recv_q), expected)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [("sendq>=1M", True), ("sendq>1M", False), ("sendq<2m", True), ("SENDQ=1048576", True)],
)
def test_sendq(expr: str, expected: bool) -> None:
    check(expr, make_sock(send_q=MIB), expected)


@pytest.mark.parametrize(
    ("expr", "rtt_us", "expected"),
    [
        ("rtt>100ms", 100_000, False),
        ("rtt>100ms", 100_001, True),
        ("rtt>=100ms", 100_000, True),
        ("rtt>100", 100_001, True),  # milliseconds by default
        ("rtt>100", 99_999, False),
        ("rtt<500us", 499, True),
        ("rtt<500US", 500, False),
        ("rtt>=1s", 1_000_000, True),
        ("rtt>1.5s", 1_400_000, False),
        ("rtt>0", None, False),  # no tcp_info: rtt terms never match
        ("rtt<1000s", None, False),
        ("!rtt>0", None, True),
    ],
)
def test_rtt(expr: str, rtt_us: int | None, expected: bool) -> None:
    check(expr, make_sock(rtt_us=rtt_us), expected)


def test_rtt_missing_from_short_tcp_info() -> None:
    short = TcpInfo(tcp_info(rto=204000).raw[:12])  # an old kernel's prefix: no rtt field
    check("rtt>=0", make_sock(info=short), False)


def skmem(
    rmem: int = 0,
    rcvbuf: int = 1000,
    wmem: int = 0,
    sndbuf: int = 1000,
    wqueued: int = 0,
    drops: int = 0,
) -> tuple[int, ...]:
    return (rmem, rcvbuf, wmem, sndbuf, 0, wqueued, 0, 0, drops)


@pytest.mark.parametrize(
    ("expr", "fields", "expected"),
    [
        ("drops>0", {"skmem": skmem(drops=3)}, True),
        ("drops>0", {"skmem": skmem()}, False),
        ("drops=3", {"skmem": skmem(drops=3)}, True),
        ("drops>=0", {"skmem": None}, False),  # no skmem: no drop count
        ("rfill>=80", {"skmem": skmem(rmem=800)}, True),
        ("rfill>=80", {"skmem": skmem(rmem=799)}, False),
        ("rfill>=80%", {"skmem": skmem(rmem=800)}, True),
        ("rfill=29", {"skmem": skmem(rmem=29, rcvbuf=100)}, True),  # no float surprises
        ("rfill>100", {"skmem": skmem(rmem=1500)}, True),
        ("rfill>=0", {"skmem": skmem(rcvbuf=0)}, False),
        ("rfill>=0", {"skmem": None}, False),
        # listeners: accept queue / backlog
        ("rfill>=100", {"state": "LISTEN", "recv_q": 3, "send_q": 2}, True),
        ("rfill>50", {"state": "LISTEN", "recv_q": 1, "send_q": 2}, False),
        ("sfill>=50", {"skmem": skmem(wqueued=500)}, True),
        ("sfill>=50", {"skmem": skmem(wqueued=499)}, False),
        ("sfill>=50", {"proto": "udp", "skmem": skmem(wmem=500)}, True),
        ("sfill>=0", {"state": "LISTEN"}, False),
    ],
)
def test_skmem_fields(expr: str, fields: dict[str, Any], expected: bool) -> None:
    check(expr, make_sock(**fields), expected)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("", True),
        ("   \t ", True),
        ("proto:tcp port:443", True),
        ("proto:tcp port:80", False),
        ("proto:tcp and port:443", True),
        ("proto:tcp AND port:80", False),
        ("proto:udp or port:443", True),
        ("proto:udp OR port:80", False),
        ("!proto:udp", True),
        ("!proto:tcp", False),
        ("! proto:tcp", False),
        ("!!proto:tcp", True),
        ("!(proto:udp or port:80)", True),
        ("!(proto:tcp or port:80)", False),
        # AND binds tighter than OR: udp OR (tcp AND 443)
        ("proto:udp or proto:tcp port:443", True),
        ("proto:udp or proto:tcp port:80", False),
        ("proto:tcp port:80 or proto:udp", False),
        ("proto:tcp port:80 or port:443", True),
        ("(proto:udp or proto:tcp) port:80", False),
        ("(proto:udp or proto:tcp) port:443", True),
        ("proto:udp or (proto:tcp port:443)", True),
        ("((proto:tcp))", True),
        ("(proto:tcp)(port:443)", True),
        ("!proto:tcp or port:443", True),  # ! binds to its own term only
        ("!proto:tcp port:443", False),
        ("state:estab !recvq>0 !flag:any", True),
        ("drops!=0", False),
    ],
)
def test_combinators(expr: str, expected: bool) -> None:
    check(expr, make_sock(skmem=skmem()), expected)


FIELDS = (
    "proto, state, port, sport, dport, addr, src, dst, proc, pid, user, netns, flag, family, "
    "path, type, peer, recvq, sendq, rtt, drops, rfill, sfill, rx, tx, retr"
)
STATES = (
    "estab, syn-sent, syn-recv, fin-wait-1, fin-wait-2, time-wait, unconn, close-wait, "
    "last-ack, listen, closing"
)


BARE = "expected field:value or a comparison like recvq>64k"
BYTES = "(bytes, e.g. 64k or 1M)"
PORT_RANGE = "(a number from 0 to 65535)"


@pytest.mark.parametrize(
    ("expr", "term", "column", "reason"),
    [
        ("prot:tcp", "prot:tcp", 1, f"unknown field 'prot' (fields: {FIELDS})"),
        ("proto:tcp tcp", "tcp", 11, BARE),
        ("10.0.0.1", "10.0.0.1", 1, BARE),
        ("state:foo", "state:foo", 1, f"unknown state 'foo' (states: {STATES})"),
        ("proto:icmp", "proto:icmp", 1, "unknown protocol 'icmp' (tcp, udp or unix)"),
        ("family:5", "family:5", 1, "unknown family '5' (inet, inet6, 4, 6 or unix)"),
        ("addr:10.0.0.0/33", "addr:10.0.0.0/33", 1, "bad address or CIDR '10.0.0.0/33'"),
        ("dst:fe80::zz", "dst:fe80::zz", 1, "bad address or CIDR 'fe80::zz'"),
        ("src:host", "src:host", 1, "bad address or CIDR 'host'"),
        ("port:65536", "port:65536", 1, f"bad port '65536' {PORT_RANGE}"),
        ("x:1 dport:http", "x:1", 1, f"unknown field 'x' (fields: {FIELDS})"),
        ("port:1 dport:http", "dport:http", 8, f"bad port 'http' {PORT_RANGE}"),
        ("pid:-1", "pid:-1", 1, "bad pid '-1' (a number from 0 to 2147483647)"),
        (
            "flag:stalled",  # a typo must not silently match nothing
            "flag:stalled",
            1,
            "unknown flag 'stalled' (any, info, warning, critical, "
            + ", ".join(sorted(FLAG_KINDS))
            + ")",
        ),
        ("recvq>64x", "recvq>64x", 1, f"bad number '64x' {BYTES}"),
        ("sendq>=k", "sendq>=k", 1, f"bad number 'k' {BYTES}"),
        ("rtt>5m", "rtt>5m", 1, "bad number '5m' (a time in us, ms or s; ms by default)"),
        ("drops>1k", "drops>1k", 1, "bad number '1k' (a plain count)"),
        ("rfill>=-5", "rfill>=-5", 1, "bad number '-5' (a percentage, e.g. 80)"),
        ("recvq=>5", "recvq=>5", 1, f"bad number '>5' {BYTES}"),
        ("proto:", "proto:", 1, "missing value after proto:"),
        ("port:1 recvq>", "recvq>", 8, "missing value after recvq>"),
        ("recvq:5", "recvq:5", 1, "'recvq' takes a comparison (> >= < <= = !=), e.g. recvq>10"),
        ("proto>tcp", "proto>tcp", 1, "'proto' takes proto:VALUE, not a comparison"),
        ("(proto:tcp", "(", 1, "unclosed '('"),
        ("proto:tcp (", "(", 11, "unclosed '('"),
        ("((proto:tcp)", "(", 1, "unclosed '('"),
        ("proto:tcp)", ")", 10, "unmatched ')'"),
        (")", ")", 1, "unmatched ')'"),
        ("()", "(", 1, "empty parentheses"),
        ("proto:tcp or", "or", 11, "'or' needs a term after it"),
        ("or proto:tcp", "or", 1, "'or' needs a term before it"),
        ("proto:tcp or or port:1", "or", 11, "'or' needs a term after it"),
        ("(proto:tcp or)", "or", 12, "'or' needs a term after it"),
        ("proto:tcp AND", "AND", 11, "'AND' needs a term after it"),
        ("and proto:tcp", "and", 1, "'and' needs a term before it"),
        ("proto:tcp !", "!", 11, "'!' needs a term after it"),
        ("!", "!", 1, "'!' needs a term after it"),
        ("!or port:1", "!", 1, "'!' needs a term after it"),
        ("(!)", "!", 2, "'!' needs a term after it"),
    ],
)
def test_errors(expr: str, term: str, column: int, reason: str) -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(expr)
    assert str(caught.value) == f"bad filter term '{term}' at column {column}: {reason}"
    assert caught.value.column == column
    assert isinstance(caught.value, ValueError)


def test_error_message_spelled_out() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter("state:estab  recvq>64q")
    assert str(caught.value) == (
        "bad filter term 'recvq>64q' at column 14: bad number '64q' (bytes, e.g. 64k or 1M)"
    )


def test_error_is_one_line_even_for_odd_characters() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter("proc:a proto:\x1b[31m")
    assert "\n" not in str(caught.value)
    assert caught.value.column == 8


SAMPLES = [
    make_sock(),
    make_sock(rtt_us=None, skmem=None, **MAPPED),
    make_sock(state="LISTEN", recv_q=3, send_q=2, process=NGINX, flags=STALLED_WARN, **V6),
    make_sock(proto="udp", state="UNCONN", local_addr="*", peer_addr="*", netns="ns-1"),
]
FRAGMENTS = [
    "(", ")", "!", " ", "or", "and", "proto:", "tcp", "state:", "estab", "port:", "addr:",
    "10.0.0.0/8", "::1", "proc:", "flag:", "netns:", "*", "recvq", "rtt", "rfill", ">", ">=",
    "<", "=", "!=", ":", "64k", "1.5", "ms", "%", "user:", "root", "0",
]  # fmt: skip


def assert_compiles_or_filter_error(expr: str) -> None:
    try:
        predicate = compile_filter(expr)
    except FilterError as error:
        assert "\n" not in str(error)
        assert 1 <= error.column <= len(expr)
        return
    for sock in SAMPLES:
        assert isinstance(predicate(sock), bool)
    # the view's one-comprehension pass keeps exactly what the predicate keeps
    assert select(predicate, SAMPLES) == [s for s in SAMPLES if predicate(s)]


@settings(max_examples=400)
@given(st.text(max_size=40))
def test_random_text_raises_only_filter_error(expr: str) -> None:
    assert_compiles_or_filter_error(expr)


@settings(max_examples=400)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join))
def test_random_filter_fragments_raise_only_filter_error(expr: str) -> None:
    assert_compiles_or_filter_error(expr)


@pytest.mark.parametrize("show_unix", [False, True])
@pytest.mark.parametrize(
    "expr", ["", "state:estab rfill<50", "!flag:any or proto:udp", "netns:ns-* rtt<30ms"]
)
def test_select_keeps_what_the_filter_keeps(expr: str, show_unix: bool) -> None:
    """One comprehension over the sockets, as the view filters, in their order."""
    keep = with_unix(expr, show_unix)
    socks = SAMPLES * 3
    kept = select(keep, socks)
    assert kept == [s for s in socks if keep(s)]
    assert kept  # each expression keeps some of the samples: the test sees a real pass
