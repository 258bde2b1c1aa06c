"""Thresholds and hold times of every flag, loaded from TOML and `--set section.key=value`.

Each flag kind is a TOML table named like the flag, e.g.

    [stalled_reader]
    hold = 5.0          # seconds the condition must hold before the flag is raised
    clear = 3.0         # seconds it must be false before the flag goes away
"""

import math
import os
import re
import stat
from typing import Annotated, Any, NamedTuple

from bufmon.pacing import DEFAULT_CPU_SHARE

FRONT_END_SECTIONS = ("view", "keys")  # the interactive view's, read by bufmon.viewconfig
MAX_VALUE = 1e9  # no threshold or hold time is sensibly larger
MAX_FILE_BYTES = 1 << 20


class ConfigError(ValueError):
    """One line: the file (or "--set"), the key and what is wrong."""


# A value from 0 to 1. Each key's annotation (int, float or Fraction) says how a value
# for it is checked: this module keeps its annotations as objects (no `from __future__
# import annotations`).
Fraction = Annotated[float, "from 0 to 1"]


# Sections are NamedTuples, not dataclasses: eighteen frozen dataclasses took ~25 ms
# of every start-up.
class StalledReader(NamedTuple):
    hold: float = 5.0
    clear: float = 3.0


class SlowReader(NamedTuple):
    window: float = 10.0
    fill: Fraction = 0.5  # r / rb
    share: Fraction = 0.5  # part of the window spent above `fill`
    min_queue: int = 65536
    clear: float = 5.0


class PeerZeroWindow(NamedTuple):
    hold: float = 3.0
    critical: float = 10.0  # seconds without bytes_acked progress
    clear: float = 3.0


class SendQueueFull(NamedTuple):
    hold: float = 5.0
    fill: Fraction = 0.9  # w / tb
    peer_share: Fraction = 0.8  # rwnd_limited / busy_time: the peer is the limit
    buffer_share: Fraction = 0.5  # sndbuf_limited / busy_time: our buffer is
    busy_share: Fraction = 0.5  # busy_time / window below this: the app is the limit
    clear: float = 5.0


class BufferLimited(NamedTuple):
    hold: float = 5.0  # seconds a sender must stay limited by a fixed buffer
    clear: float = 5.0


class CloseWait(NamedTuple):
    hold: float = 30.0  # seconds in CLOSE-WAIT before an info flag
    warn: float = 300.0  # seconds in CLOSE-WAIT before it becomes a warning
    clear: float = 0.0


class OrphanSockets(NamedTuple):
    warn: Fraction = 0.5  # orphans (sockstat TCP orphan) / tcp_max_orphans
    critical: Fraction = 0.9
    clear: float = 10.0


class RcvbufOverrun(NamedTuple):
    near: Fraction = 0.9  # r / rb that counts as full on a small buffer
    clear: float = 10.0


class AcceptQueueFull(NamedTuple):
    hold: float = 2.0
    fill: Fraction = 0.8
    full_hold: float = 1.0  # Recv-Q > Send-Q: critical after this long
    clear: float = 5.0


class SynBacklog(NamedTuple):
    hold: float = 2.0
    clear: float = 10.0


class UdpDrops(NamedTuple):
    hold: float = 2.0  # for the fill warning; a rising drop count is critical at once
    fill: Fraction = 0.9
    clear: float = 10.0


class DgramQueueFull(NamedTuple):
    hold: float = 3.0  # seconds a UNIX datagram queue must not drain
    clear: float = 5.0


class MemoryPressure(NamedTuple):
    warn: Fraction = 0.8  # of tcp_mem's pressure value
    clear: float = 10.0


class PortExhaustion(NamedTuple):
    hold: float = 2.0
    warn: Fraction = 0.5  # of the ip_local_port_range size
    critical: Fraction = 0.8
    clear: float = 10.0


class NagleHint(NamedTuple):
    hold: float = 10.0
    rtt_ratio: float = 10.0  # srtt / min_rtt
    min_srtt_ms: float = 20.0
    clear: float = 10.0


class HistoryConfig(NamedTuple):
    window: float = 600.0  # seconds of per-socket history
    linger: float = 60.0  # seconds a closed flagged socket stays listed
    max_mb: float = 48.0  # history budget; busy sockets keep less than `window` past it


class RefreshConfig(NamedTuple):
    # share of one core the default interval keeps refreshes within (longer waits on
    # a host where one refresh is slow); 0: never wait longer. --interval, + and - rule.
    cpu_share: Fraction = DEFAULT_CPU_SHARE


class Config(NamedTuple):
    stalled_reader: StalledReader = StalledReader()
    slow_reader: SlowReader = SlowReader()
    peer_zero_window: PeerZeroWindow = PeerZeroWindow()
    send_queue_full: SendQueueFull = SendQueueFull()
    buffer_limited: BufferLimited = BufferLimited()
    close_wait: CloseWait = CloseWait()
    orphan_sockets: OrphanSockets = OrphanSockets()
    rcvbuf_overrun: RcvbufOverrun = RcvbufOverrun()
    accept_queue_full: AcceptQueueFull = AcceptQueueFull()
    syn_backlog: SynBacklog = SynBacklog()
    udp_drops: UdpDrops = UdpDrops()
    dgram_queue_full: DgramQueueFull = DgramQueueFull()
    memory_pressure: MemoryPressure = MemoryPressure()
    port_exhaustion: PortExhaustion = PortExhaustion()
    nagle_hint: NagleHint = NagleHint()
    history: HistoryConfig = HistoryConfig()
    refresh: RefreshConfig = RefreshConfig()


def default_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "bufmon", "config.toml")


def load_config(path: str | None, overrides: list[str]) -> Config:
    """Defaults, then the file (path, or the default path if it exists), then overrides."""
    config = Config()
    if path is None and os.path.exists(default_path()):
        path = default_path()
    if path is not None:
        data = {k: v for k, v in read_toml(path).items() if k not in FRONT_END_SECTIONS}
        config = _apply(config, data, path)
    for text in overrides:
        config = _apply(config, _parse_override(text), "--set")
    return config


_TOML_LINE = re.compile(r"\s*\(at line (\d+), column \d+\)$")


def _read_file(path: str) -> bytes:
    """The file's bytes, never blocking: opened O_NONBLOCK (a FIFO), only a regular file,
    and only the st_size bytes it claims (so /proc/kmsg and the like read as empty)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if path == os.devnull:
            return b""
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB")
        try:
            return f.read(info.st_size)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def parse_toml(text: str) -> dict[str, Any]:
    """tomllib.loads, with input nested past Python's recursion limit as a TOMLDecodeError
    (a ValueError). tomllib loads here: only a config file or `--set` needs it."""
    import tomllib

    try:
        return tomllib.loads(text)
    except RecursionError:
        raise tomllib.TOMLDecodeError("nested too deeply") from None


def read_text(path: str) -> str:
    """The config file's text, read as _read_file does (never blocking, bounded)."""
    try:
        return _read_file(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (at byte offset {exc.start})") from None


def read_toml(path: str) -> dict[str, Any]:
    text = read_text(path)
    try:
        return parse_toml(text)
    except ValueError as exc:
        message = str(exc)
        match = _TOML_LINE.search(message)
        if match:
            message = f"line {match.group(1)}: {message[: match.start()]}"
        raise ConfigError(f"{path}: {message}") from None


def _parse_override(text: str) -> dict[str, Any]:
    """ "stalled_reader.hold=3" -> {"stalled_reader": {"hold": 3}}."""
    name, sep, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(f"--set: {text!r}: expected section.key=value")
    try:
        value = parse_toml(f"v = {raw.strip()}")["v"]
    except ValueError:
        value = raw.strip()  # not a TOML value: keep the text so the error can quote it
    return {section: {key: value}}


def _apply(config: Config, data: dict[str, Any], source: str) -> Config:
    changes: dict[str, Any] = {}
    sections = set(Config._fields)
    for section, table in data.items():
        if section not in sections:
            raise ConfigError(f"{source}: unknown section [{section}]")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {section}: expected a table of keys")
        changes[section] = _apply_section(getattr(config, section), section, table, source)
    return config._replace(**changes)


def _apply_section(current: Any, section: str, table: dict[str, Any], source: str) -> Any:
    kinds = type(current).__annotations__
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{source}: {section}.{key}"
        if key not in kinds:
            raise ConfigError(f"{where}: unknown key")
        values[key] = _check_value(value, kinds[key], where)
    return current._replace(**values)


def _check_value(value: Any, kind: Any, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        wanted = "an integer" if kind is int else "a number"
        raise ConfigError(f"{where}: expected {wanted}, got {value!r}")
    if kind is int and not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if not math.isfinite(value) or value > MAX_VALUE:
        raise ConfigError(f"{where}: expected a finite number up to {MAX_VALUE:g}, got {value!r}")
    if value < 0:
        raise ConfigError(f"{where}: must not be negative, got {value!r}")
    if kind == Fraction and value > 1:
        raise ConfigError(f"{where}: expected a fraction between 0 and 1, got {value!r}")
    return value if kind is int else float(value)
