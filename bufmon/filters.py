"""The filter language shared by `bufmon snapshot FILTER` and the TUI's `/` prompt.

    proto:tcp state:estab recvq>64k            terms side by side mean AND
    rx>10M or retr>0                           rates per second (none on a first sample)
    port:443 or port:8443                      `or` binds looser than AND (`and` is optional)
    !(addr:10.0.0.0/8 or addr:::1) rtt>100ms   `!` negates a term or a group

A filter compiles once into one Python function: a call per socket, the terms inline.
Address and namespace matches are cached by their string, since those repeat a lot.
A term about data a socket lacks (rtt without tcp_info, proc without a process) is
false for that socket, so its negation is true.
"""

from __future__ import annotations

import pwd
import re
import weakref
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import NamedTuple

from bufmon.memo import Memo
from bufmon.rates import retr_rate, rx_rate, tx_rate
from collectors.model import (
    FLAG_KINDS,
    SEVERITY_RANK,
    SK_DROPS,
    STATE_NAMES,
    UNIX_TYPES,
    Sock,
    UnixSock,
)

Predicate = Callable[[Sock], bool]


class FilterError(ValueError):
    """One line naming the bad term, its 1-based column and what is wrong with it."""

    def __init__(self, term: str, column: int, reason: str) -> None:
        super().__init__(f"bad filter term {term!r} at column {column}: {reason}")
        self.term = term
        self.column = column
        self.reason = reason


class _BadValue(Exception):
    """Raised by a field's compiler; the parser adds the term and column."""


# --- tokens -----------------------------------------------------------------------

_PUNCT = "()!"
_KEYWORDS = ("or", "and")


class _Token(NamedTuple):
    kind: str  # "(", ")", "!", "or", "and" or "term"
    text: str
    column: int


def _tokenize(expr: str) -> list[_Token]:
    """Split on whitespace and parentheses; `!` is an operator only where a token starts."""
    tokens: list[_Token] = []
    i, end = 0, len(expr)
    while i < end:
        char = expr[i]
        if char.isspace():
            i += 1
        elif char in _PUNCT:
            tokens.append(_Token(char, char, i + 1))
            i += 1
        else:
            start = i
            while i < end and not expr[i].isspace() and expr[i] not in "()":
                i += 1
            word = expr[start:i]
            kind = lowered if (lowered := word.lower()) in _KEYWORDS else "term"
            tokens.append(_Token(kind, word, start + 1))
    return tokens


# --- values -------------------------------------------------------------------------

_NUMBER = re.compile(r"([0-9]+(?:\.[0-9]+)?)([a-z%]*)")
_INTEGER = re.compile(r"[0-9]{1,10}")

_BYTE_UNITS: dict[str, float] = {"": 1, "b": 1} | {
    suffix: 1024**power
    for power, letter in enumerate("kmg", start=1)
    for suffix in (letter, letter + "b", letter + "ib")
}
_RTT_UNITS: dict[str, float] = {"": 1000, "us": 1, "ms": 1000, "s": 1_000_000}  # to microseconds
_PERCENT_UNITS = {"": 0.01, "%": 0.01}  # to a fraction, as Sock.recv_fill is
_COUNT_UNITS: dict[str, float] = {"": 1}

_STATES = {
    spelling.lower(): name
    for name in STATE_NAMES.values()
    for spelling in (name, name.replace("-", ""), name.replace("-", "_"))
} | {"established": "ESTAB", "tw": "TIME-WAIT"}
_STATE_NAMES = tuple(dict.fromkeys(name.lower() for name in STATE_NAMES.values()))
_STATE_LIST = ", ".join(_STATE_NAMES)

_FAMILIES = {
    **dict.fromkeys(("inet", "4", "ipv4"), "inet"),
    **dict.fromkeys(("inet6", "6", "ipv6"), "inet6"),
    "unix": "unix",
}

_CACHE_LIMIT = 65536  # per compiled term; cleared when reached, so memory stays bounded


def _number(value: str, units: dict[str, float], hint: str) -> float:
    found = _NUMBER.fullmatch(value.lower())
    if found is None or found.group(2) not in units:
        raise _BadValue(f"bad number {value!r} ({hint})")
    return float(found.group(1)) * units[found.group(2)]


def _integer(value: str, what: str, limit: int) -> int:
    if _INTEGER.fullmatch(value) is None or int(value) > limit:
        raise _BadValue(f"bad {what} {value!r} (a number from 0 to {limit})")
    return int(value)


def _address_test(value: str) -> Callable[[str], bool]:
    """Exact address or CIDR; an IPv4 network also matches v4-mapped IPv6 addresses."""
    import ipaddress  # late: only an address term needs it

    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise _BadValue(f"bad address or CIDR {value!r}") from None

    def test(text: str) -> bool:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:  # "*" and other unparsable text
            return False
        if isinstance(address, ipaddress.IPv6Address) and network.version == 4:
            mapped = address.ipv4_mapped
            return mapped is not None and mapped in network
        return address.version == network.version and address in network

    return Memo(test, _CACHE_LIMIT).__getitem__


# --- fields -------------------------------------------------------------------------
# A match field compiles `field:value`; a compare field compiles `field OP value`. Each
# gives Python source over the socket `s` (`_Code`): a whole filter becomes one function,
# one call per socket instead of one per term. The user's values never enter the source:
# they are bound to names the source reads.


class _Code(NamedTuple):
    """A test as Python source over the socket `s`; `{name}` reads `values[name]`."""

    text: str
    values: dict[str, object] = {}  # read, never changed: one {} serves every default


def _proto(value: str) -> _Code:
    proto = value.lower()
    if proto not in ("tcp", "udp", "unix"):
        raise _BadValue(f"unknown protocol {value!r} (tcp, udp or unix)")
    return _Code("s.proto == {proto}", {"proto": proto})


def _state(value: str) -> _Code:
    state = _STATES.get(value.lower())
    if state is None:
        raise _BadValue(f"unknown state {value!r} (states: {_STATE_LIST})")
    return _Code("s.state == {state}", {"state": state})


def _port(value: str) -> _Code:
    port = _integer(value, "port", 65535)
    return _Code("(s.local_port == {port} or s.peer_port == {port})", {"port": port})


def _sport(value: str) -> _Code:
    return _Code("s.local_port == {port}", {"port": _integer(value, "port", 65535)})


def _dport(value: str) -> _Code:
    return _Code("s.peer_port == {port}", {"port": _integer(value, "port", 65535)})


def _addr(value: str) -> _Code:
    return _Code("({match}(s.local_addr) or {match}(s.peer_addr))", {"match": _address_test(value)})


def _src(value: str) -> _Code:
    return _Code("{match}(s.local_addr)", {"match": _address_test(value)})


def _dst(value: str) -> _Code:
    return _Code("{match}(s.peer_addr)", {"match": _address_test(value)})


def _proc(value: str) -> _Code:
    needle = value.lower()
    return _Code(
        "(s.process is not None and {needle} in s.process.comm.lower())", {"needle": needle}
    )


def _pid(value: str) -> _Code:
    pid = _integer(value, "pid", 2**31 - 1)
    return _Code("(s.process is not None and s.process.pid == {pid})", {"pid": pid})


def _user(value: str) -> _Code:
    """A uid compares with the socket's owner; a name with the process's user or its uid."""
    if value.isdecimal():
        return _Code("s.uid == {uid}", {"uid": _integer(value, "uid", 2**32 - 1)})
    try:
        name_uid: int | None = pwd.getpwnam(value).pw_uid
    except (KeyError, ValueError):  # unknown here (or no name at all: a NUL, a surrogate)
        name_uid = None
    return _Code(
        "(s.uid == {uid} or (s.process is not None and s.process.user == {name}))",
        {"uid": name_uid, "name": value},
    )


def _netns(value: str) -> _Code:
    """The namespace's label ("docker:0123456789ab") or its container's name ("docker:web")."""
    if not any(char in value for char in "*?["):
        return _Code("(s.netns == {label} or s.netns_name == {label})", {"label": value})
    match = Memo[str, bool](lambda label: fnmatchcase(label, value), _CACHE_LIMIT).__getitem__
    return _Code(
        "({match}(s.netns) or (s.netns_name is not None and {match}(s.netns_name)))",
        {"match": match},
    )


def _flag(value: str) -> _Code:
    """`any`, a severity (that one or worse) or a flag kind."""
    wanted = value.lower().replace("-", "_")
    if wanted == "any":
        return _Code("bool(s.flags)")
    rank = SEVERITY_RANK.get(wanted)
    if rank is not None:
        return _Code("s.worst_severity() >= {rank}", {"rank": rank})
    if wanted not in FLAG_KINDS:
        kinds = ", ".join(sorted(FLAG_KINDS))
        raise _BadValue(f"unknown flag {value!r} (any, info, warning, critical, {kinds})")
    return _Code("any(f.kind == {kind} for f in s.flags)", {"kind": wanted})


def _family(value: str) -> _Code:
    family = _FAMILIES.get(value.lower())
    if family is None:
        raise _BadValue(f"unknown family {value!r} (inet, inet6, 4, 6 or unix)")
    return _Code("s.family == {family}", {"family": family})


def _path(value: str) -> _Code:
    """A glob over a UNIX socket's path or its peer's (abstract names start with @)."""
    match = Memo[str, bool](
        lambda path: bool(path) and fnmatchcase(path, value), _CACHE_LIMIT
    ).__getitem__
    return _Code(
        "(isinstance(s, {unix}) and ({match}(s.local_addr) or {match}(s.peer_addr)))",
        {"unix": UnixSock, "match": match},
    )


def _type(value: str) -> _Code:
    kind = value.lower()
    if kind not in UNIX_TYPES.values():
        raise _BadValue(f"unknown socket type {value!r} ({', '.join(UNIX_TYPES.values())})")
    return _Code(
        "(isinstance(s, {unix}) and s.sock_type == {kind})", {"unix": UnixSock, "kind": kind}
    )


def _peer(value: str) -> _Code:
    """The process on the other end of a UNIX socket (its name contains `value`)."""
    return _Code(
        "(isinstance(s, {unix}) and s.peer_process is not None"
        " and {needle} in s.peer_process.comm.lower())",
        {"unix": UnixSock, "needle": value.lower()},
    )


def _tcp_rtt(s: Sock) -> int | None:
    return None if s.info is None else s.info.get("rtt")


_MATCH_FIELDS: dict[str, Callable[[str], _Code]] = {
    "proto": _proto,
    "state": _state,
    "port": _port,
    "sport": _sport,
    "dport": _dport,
    "addr": _addr,
    "src": _src,
    "dst": _dst,
    "proc": _proc,
    "pid": _pid,
    "user": _user,
    "netns": _netns,
    "flag": _flag,
    "family": _family,
    "path": _path,
    "type": _type,
    "peer": _peer,
}

# name -> (value as source, None when unknown; units; hint for a bad value)
_COMPARE_FIELDS: dict[str, tuple[_Code, dict[str, float], str]] = {
    "recvq": (_Code("s.recv_q"), _BYTE_UNITS, "bytes, e.g. 64k or 1M"),
    "sendq": (_Code("s.send_q"), _BYTE_UNITS, "bytes, e.g. 64k or 1M"),
    "rtt": (
        _Code("{rtt}(s)", {"rtt": _tcp_rtt}),
        _RTT_UNITS,
        "a time in us, ms or s; ms by default",
    ),
    "drops": (_Code("s.skmem_value({drops})", {"drops": SK_DROPS}), _COUNT_UNITS, "a plain count"),
    "rfill": (_Code("s.recv_fill"), _PERCENT_UNITS, "a percentage, e.g. 80"),
    "sfill": (_Code("s.send_fill"), _PERCENT_UNITS, "a percentage, e.g. 80"),
    "rx": (_Code("{rx}(s)", {"rx": rx_rate}), _BYTE_UNITS, "bytes per second, e.g. 10M"),
    "tx": (_Code("{tx}(s)", {"tx": tx_rate}), _BYTE_UNITS, "bytes per second, e.g. 1M"),
    "retr": (
        _Code("{retr}(s)", {"retr": retr_rate}),
        _COUNT_UNITS,
        "retransmitted segments per second, e.g. 0 or 2.5",
    ),
}

MATCH_FIELDS = tuple(_MATCH_FIELDS)  # "field:value" terms
COMPARE_FIELDS = tuple(_COMPARE_FIELDS)  # "field>number" terms (any operator)
_FIELD_LIST = ", ".join([*MATCH_FIELDS, *COMPARE_FIELDS])
# the values a match field knows, as shell completion offers them
FIELD_VALUES: dict[str, tuple[str, ...]] = {
    "proto": ("tcp", "udp", "unix"),
    "state": _STATE_NAMES,
    "family": ("inet", "inet6", "unix"),
    "flag": ("any", *SEVERITY_RANK, *sorted(FLAG_KINDS)),
    "type": tuple(UNIX_TYPES.values()),
}

_OPERATORS = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "=": "==", "!=": "!="}  # as Python's

_TERM = re.compile(r"([A-Za-z]+)(>=|<=|!=|[<>=:])(.*)", re.DOTALL)


def _compare(get: _Code, op: str, limit: float) -> _Code:
    """`get OP limit`, false when the value is unknown (None)."""
    text = f"((_v := {get.text}) is not None and _v {_OPERATORS[op]} {{limit}})"
    return _Code(text, {**get.values, "limit": limit})


def _compile_term(term: str) -> _Code:
    parts = _TERM.fullmatch(term)
    if parts is None:
        raise _BadValue("expected field:value or a comparison like recvq>64k")
    name, op, value = parts.group(1).lower(), parts.group(2), parts.group(3)
    if name not in _MATCH_FIELDS and name not in _COMPARE_FIELDS:
        raise _BadValue(f"unknown field {name!r} (fields: {_FIELD_LIST})")
    if not value:
        raise _BadValue(f"missing value after {name}{op}")
    if name in _MATCH_FIELDS:
        if op != ":":
            raise _BadValue(f"{name!r} takes {name}:VALUE, not a comparison")
        return _MATCH_FIELDS[name](value)
    if op == ":":
        raise _BadValue(f"{name!r} takes a comparison (> >= < <= = !=), e.g. {name}>10")
    get, units, hint = _COMPARE_FIELDS[name]
    return _compare(get, op, _number(value, units, hint))


# --- grammar ------------------------------------------------------------------------
#   expr := conj ("or" conj)*      conj := unary (["and"] unary)*
#   unary := "!"* ("(" expr ")" | term)
# Only parentheses recurse, at most MAX_DEPTH deep; runs of `!`, `and` and `or` are
# loops, and the compiled predicate is flat, so no input reaches the recursion limit.

MAX_DEPTH = 32  # nested parentheses


def _joined(parts: list[str], every: bool) -> str:
    """All (`every`) or any of the parts, as one flat `and` / `or`."""
    if len(parts) == 1:
        return parts[0]
    return "(" + (" and " if every else " or ").join(parts) + ")"


# what a compiled filter's source may call besides the values bound in it
_BUILTINS = {"any": any, "bool": bool, "isinstance": isinstance}


def _function(text: str, values: dict[str, object]) -> Predicate:
    """A filter's source as one Python function, and its `select` as one comprehension.
    The source is made of this module's fixed pieces and generated names only; the
    user's values are bound to the names."""
    scope: dict[str, object] = {"__builtins__": _BUILTINS, **values}
    source = (
        f"def predicate(s):\n    return True if {text} else False\n"
        f"def select(socks):\n    return [s for s in socks if {text}]\n"
    )
    exec(compile(source, "<filter>", "exec"), scope)
    predicate: Predicate = scope["predicate"]  # type: ignore[assignment]
    _selectors[predicate] = scope["select"]  # type: ignore[assignment]
    return predicate


# compiled filter -> its comprehension (kept while the filter lives)
_selectors: weakref.WeakKeyDictionary[Predicate, Callable[[Iterable[Sock]], list[Sock]]] = (
    weakref.WeakKeyDictionary()
)


def select(keep: Predicate, socks: Iterable[Sock]) -> list[Sock]:
    """The sockets `keep` accepts, in order: a compiled filter tests them in one
    comprehension, without a call per socket."""
    whole = _selectors.get(keep)
    return list(filter(keep, socks)) if whole is None else whole(socks)


def _match_all(_sock: Sock) -> bool:
    return True


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0  # parentheses open around the current position
        self.values: dict[str, object] = {}  # generated name -> the value it reads

    def bind(self, code: _Code) -> str:
        """`code`'s source with its values bound to names no other term uses."""
        names = {}
        for key, value in code.values.items():
            names[key] = name = f"_{len(self.values)}"
            self.values[name] = value
        return code.text.format_map(names)

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> str:
        text = self.expr()
        extra = self.peek()
        if extra is not None:  # only a ")" can stop expr() early
            raise FilterError(extra.text, extra.column, "unmatched ')'")
        return text

    def expr(self) -> str:
        alternatives = [self.conj(None)]
        while (token := self.peek()) is not None and token.kind == "or":
            alternatives.append(self.conj(self.take()))
        return _joined(alternatives, every=False)

    def conj(self, after: _Token | None) -> str:
        terms = [self.unary(after)]
        while (token := self.peek()) is not None and token.kind not in (")", "or"):
            joiner = self.take() if token.kind == "and" else None
            terms.append(self.unary(joiner))
        return _joined(terms, every=True)

    def unary(self, after: _Token | None) -> str:
        """One operand; `after` is the operator before it, blamed when the operand is missing."""
        negated = False
        while True:
            token = self.peek()
            if token is None or token.kind in (")", "or", "and"):
                if after is not None:
                    raise FilterError(
                        after.text, after.column, f"{after.text!r} needs a term after it"
                    )
                assert token is not None  # expr() is never asked to parse nothing
                if token.kind == ")":
                    raise FilterError(token.text, token.column, "unmatched ')'")
                raise FilterError(
                    token.text, token.column, f"{token.text!r} needs a term before it"
                )
            self.take()
            if token.kind != "!":
                break
            negated, after = not negated, token
        if token.kind == "(":
            text = self.group(token)
        else:
            try:
                text = self.bind(_compile_term(token.text))
            except _BadValue as problem:
                raise FilterError(token.text, token.column, str(problem)) from None
        return f"(not {text})" if negated else text

    def group(self, opening: _Token) -> str:
        following = self.peek()
        if following is not None and following.kind == ")":
            raise FilterError(opening.text, opening.column, "empty parentheses")
        if following is None:
            raise FilterError(opening.text, opening.column, "unclosed '('")
        if self.depth >= MAX_DEPTH:
            raise FilterError(
                opening.text, opening.column, f"parentheses nested more than {MAX_DEPTH} deep"
            )
        self.depth += 1
        inner = self.expr()
        self.depth -= 1
        if self.peek() is None:
            raise FilterError(opening.text, opening.column, "unclosed '('")
        self.take()
        return inner


def _source(expr: str) -> tuple[str, dict[str, object]] | None:
    """A filter's source and the values it reads; None for an empty or blank filter."""
    tokens = _tokenize(expr)
    if not tokens:
        return None
    parser = _Parser(tokens)
    return parser.parse(), parser.values


def compile_filter(expr: str) -> Predicate:
    """Compile a filter once; an empty or blank filter matches every socket."""
    source = _source(expr)
    return _match_all if source is None else _function(*source)


_UNIX_TERMS = ("path:", "type:", "peer:", "proto:unix", "family:unix")


def names_unix(expr: str) -> bool:
    """Whether a filter asks about UNIX sockets (proto:unix, path:, type:, peer:)."""
    return any(
        token.kind == "term" and token.text.lower().startswith(_UNIX_TERMS)
        for token in _tokenize(expr)
    )


_INET_OR_FLAGGED = '(s.proto != "unix" or bool(s.flags))'
_inet_or_flagged = _function(_INET_OR_FLAGGED, {})


def with_unix(expr: str, show_unix: bool = False) -> Predicate:
    """The filter of `expr`, where UNIX sockets (many, mostly idle) pass only when flagged
    unless `show_unix` or the filter names them (names_unix)."""
    if show_unix or names_unix(expr):
        return compile_filter(expr)
    source = _source(expr)
    if source is None:
        return _inet_or_flagged
    text, values = source
    # the user's terms first: most filters keep few sockets, so most skip the second test
    return _function(f"({text} and {_INET_OR_FLAGGED})", values)
