"""The detail screen's "Limited by" judges with the thresholds the flags use, the
user's settings included, so the two never disagree about one socket."""

from __future__ import annotations

from bufmon.diagnosis.config import SendQueueFull
from collectors.model import TcpInfo
from tui.detail_text import tcp_text

PEER = "the peer's receive window"


def test_detail_follows_the_users_peer_share() -> None:
    # busy 1 s, of which 0.6 s limited by the peer's window: 60 %
    info = TcpInfo.from_fields(busy_time=1_000_000, rwnd_limited=600_000, sndbuf_limited=0)
    assert PEER not in tcp_text(info, 200).plain  # default peer_share 0.8
    lenient = SendQueueFull(peer_share=0.5)
    assert PEER in tcp_text(info, 200, None, lenient).plain
