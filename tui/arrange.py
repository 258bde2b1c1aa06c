"""The user's column choice laid over the socket list's columns: which show, in what
order, and whether ports show as service names. Group lists keep their own columns."""

from __future__ import annotations

from dataclasses import replace

from bufmon.viewconfig import ViewSettings
from tui.columns import SOCKET_COLUMNS, Column, columns_for, end_cell

COLUMN_IDS = tuple(c.id for c in SOCKET_COLUMNS)
ENDS = {"local": 0, "peer": 1}


def arranged(group_by: str | None, settings: ViewSettings) -> tuple[Column, ...]:
    """The columns of a list grouped by `group_by`, as `settings` choose them."""
    columns = columns_for(group_by)
    if columns is not SOCKET_COLUMNS:
        return columns
    by_id = {c.id: c for c in columns}
    chosen = [by_id[i] for i in settings.columns or COLUMN_IDS if i in by_id]
    if settings.services:
        chosen = [
            replace(c, cell=end_cell(ENDS[c.id], services=True)) if c.id in ENDS else c
            for c in chosen
        ]
    return tuple(chosen)
