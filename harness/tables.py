"""Plain-text and Markdown tables: the one place where rows become aligned text."""

from __future__ import annotations

import re
from collections.abc import Sequence

# a terminal's escape sequences (CSI: colours, cursor moves, clearing; OSC: titles, links),
# then any other control character: C0 but tab, DEL and C1
ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def text_table(headers: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> str:
    """Aligned columns; ``align`` is one 'l' or 'r' per column (default: first left, rest right)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def fmt(row):
        return "  ".join(
            c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)
        ).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    return "\n".join(lines + [fmt(r) for r in cells[1:]])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence],
                   align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` as in text_table."""
    align = align or "l" + "r" * (len(headers) - 1)
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(map(str, headers)) + " |", "| " + " | ".join(sep) + " |"]
    for r in rows:
        lines.append("| " + " | ".join("" if c is None else str(c) for c in r) + " |")
    return "\n".join(lines)


def printable(text, limit: int | None = None) -> str:
    """Text another process wrote (a worker's log, a tool's output) made safe to show and to
    store: terminal escapes and control characters removed, tabs as spaces, at most ``limit``
    characters. Without it, a line of Valgrind's could clear the screen."""
    text = CONTROLS.sub("", ESCAPES.sub("", str(text))).replace("\t", " ").strip()
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"


def md_escape(text) -> str:
    """Text from a results file (a host name, a failure reason) made safe for Markdown: one
    line, no HTML, and no character that starts a table cell, emphasis, a link or code."""
    text = " ".join(str(text).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "\\`*[]|#":  # not _: GitHub never reads intra-word underscores as emphasis
        text = text.replace(ch, "\\" + ch)
    return text


def md_code(text) -> str:
    """Text from a results file as inline code (a file name, a case id) in a Markdown table."""
    text = " ".join(str(text).split()).replace("`", "'").replace("|", "\\|")
    return f"`{text}`"


def fmt_time(seconds: float | None) -> str:
    """A per-step time with a unit chosen for it: 5.7 ns, 3.15 µs, 25.6 ms, 1.20 s."""
    if seconds is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if abs(seconds) >= scale or unit == "ns":
            v = seconds / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:,.0f} {unit}"
    return f"{seconds:.3g} s"  # pragma: no cover


def fmt_ratio(x: float | None) -> str:
    """2.61×, 1,495×; below 1 always as a fraction, 1/1.17×, 1/1,495×: one notation (a ratio
    that rounds to 1 on either side is 1×)."""
    if x is None:
        return "—"
    if 0 < x < 1:
        return "1×" if f"{1 / x:.3g}" == "1" else f"1/{fmt_ratio(1 / x)}"
    return f"{x:,.0f}×" if x >= 100 else f"{x:.3g}×"


def fmt_change(x: float) -> str:
    """A ratio near 1 (B / A in compare) as a decimal: 0.95×, 1.2×."""
    return f"{x:.3g}×"
