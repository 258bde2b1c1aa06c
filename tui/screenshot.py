"""SVG screenshots that keep every column where the screen has it.

Rich writes a run of same-styled cells as one <text> with its spaces as &#160;, and SVG
renderers (librsvg, browsers) drop a run's leading and trailing spaces, so "ESTAB 15"
drawn as " ESTAB " then "15" showed as "ESTAB  15" glued to the next label. Moving the
edge spaces out of each run (its x moves right, its textLength shrinks) draws the same
cells with nothing left to drop.
"""

from __future__ import annotations

import re

NBSP = "&#160;"
_TEXT = re.compile(
    r'(<text [^>]*?x=")([\d.]+)("[^>]*?textLength=")([\d.]+)("[^>]*>)'
    r"((?:&#160;)+)?([^<]*?)((?:&#160;)+)?(</text>)"
)


def _trim(match: re.Match[str]) -> str:
    head, x, mid, length, tag, lead, body, trail, end = match.groups()
    lead, trail = lead or "", trail or ""
    if not (lead or trail) or not body:
        return match.group(0)
    cells = (len(lead) + len(trail)) // len(NBSP) + len(re.sub(r"&[^;]+;", "_", body))
    width = float(length) / cells
    left, right = len(lead) // len(NBSP) * width, len(trail) // len(NBSP) * width
    return f"{head}{float(x) + left:g}{mid}{float(length) - left - right:g}{tag}{body}{end}"


def keep_spaces(svg: str) -> str:
    """The same picture, with no <text> starting or ending in a space."""
    return _TEXT.sub(_trim, svg)
