"""Text that a candidate or the LLM produced, made safe to show: on a terminal, in JSON, in HTML.

Every character that is not printable (C0 and C1 controls such as ESC, DEL, bidirectional and other
format characters, unassigned code points) becomes a visible `\\xNN` / `\\uNNNN` escape; newlines
and tabs stay. HTML escaping is the page's job (Jinja2 autoescape); this removes what a terminal or
a log viewer would interpret.
"""

from __future__ import annotations


def printable(text: str, limit: int | None = None, keep_lines: bool = True) -> str:
    """`text` (its last `limit` characters) with every non-printable character escaped."""
    if limit is not None:
        text = text[-limit:]
    kept = "\n\t" if keep_lines else ""
    return "".join(c if c.isprintable() or c in kept else _escape(c) for c in text)


def printable_bytes(raw: bytes, limit: int | None = None) -> str:
    """Untrusted bytes (a log) as printable text: decoded leniently, the tail only, escaped."""
    return printable(raw.decode("utf-8", errors="replace"), limit)


def _escape(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
