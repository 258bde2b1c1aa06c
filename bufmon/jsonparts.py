"""Shared parts for the `--json` outputs: what sockets have in common is encoded once.

Sock.to_json(parts) takes these instead of fresh dicts: a socket's buffers, rates
without their delivery rate, and steady runs of tcp_info become orjson Fragments made
the first time a value is seen; a process becomes one dict for all its sockets. orjson
writes the same text as for the plain parts (tests/test_json_fast.py checks it); the
standard library cannot write Fragments, so its fallback asks for the plain parts.
One SharedParts serves one document: what it keeps (at most SHARED_MAX values of
each kind) is freed with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from bufmon.jsoninfo import SHARED_MAX, SharedInfo, after_first_key
from bufmon.memo import Memo
from collectors.model import DELIVERY_RATE, PLAIN, Flag, JsonParts, Process, Rates, Sock, TcpInfo
from collectors.tcpinfo import layout

NO_FLAGS: list[Any] = []  # written, never changed
SAMPLE = 512  # sockets of a document looked at to tell its steady tcp_info fields


def shared_head(doc: dict[str, Any], last: str) -> dict[str, Any]:
    """`doc` (whose last key is `last`) with the members before it written once, under
    the first key; each copy sets `last` itself."""
    head = {key: value for key, value in doc.items() if key != last}
    return {next(iter(doc)): after_first_key(head), last: None}


def _skmem_text(skmem: tuple[int, ...]) -> orjson.Fragment:
    return orjson.Fragment(orjson.dumps(PLAIN.skmem(skmem)))


def _rates_head(rates: Rates) -> dict[str, Any]:
    return shared_head(rates.to_json(None), DELIVERY_RATE)


class SharedParts(JsonParts):
    """JsonParts for one document, each distinct value encoded once (see module doc)."""

    def __init__(self, socks: Sequence[Sock]) -> None:
        """`socks`: the document's sockets (their tcp_info is sampled)."""
        self._socks = socks
        self._infos: dict[int, SharedInfo] = {}  # by tcp_info length
        self._skmem = Memo(_skmem_text, SHARED_MAX)
        self._rates = Memo(_rates_head, SHARED_MAX)
        self._processes: dict[int, tuple[Process, dict[str, Any]]] = {}

    def skmem(self, skmem: tuple[int, ...] | None) -> Any:
        return None if skmem is None else self._skmem[skmem]

    def tcp_info(self, info: TcpInfo) -> Any:
        shared = self._infos.get(len(info))
        if shared is None:
            shared = self._infos[len(info)] = self._shared_info(len(info))
        return shared.object(info)

    def _shared_info(self, length: int) -> SharedInfo:
        """SAMPLE tcp_info of this length, spread over the document."""
        infos = [s.info for s in self._socks if s.info is not None and len(s.info) == length]
        return SharedInfo(layout(length), infos[:: max(1, len(infos) // SAMPLE)])

    def rates(self, rates: Rates, info: TcpInfo | None) -> Any:
        out = self._rates[rates].copy()  # the delivery rate differs between sockets
        out[DELIVERY_RATE] = None if info is None else info.get(DELIVERY_RATE)
        return out

    def process(self, process: Process | None) -> Any:
        if process is None:
            return None
        known = self._processes.get(id(process))
        if known is None:  # the Process is kept with its dict: its id stays its own
            known = self._processes[id(process)] = (process, process.to_json())
        return known[1]

    def flags(self, flags: Sequence[Flag]) -> Any:
        return super().flags(flags) if flags else NO_FLAGS
