"""The one place where text a candidate or the LLM produced becomes HTML.

Everything else in the pages goes through Jinja2's autoescaping. Two helpers here: `printable`
makes control characters (ANSI escapes, NUL, ...) and bidirectional overrides ("Trojan Source")
visible as `\\x1b`-style text, and `highlight_python` colours code with Pygments, whose HTML
formatter escapes every token it writes. The result is `Markup` only after that escaping.
"""

from __future__ import annotations

import unicodedata

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

# Layout characters that stay as they are.
_KEEP = {"\n", "\t", "\r"}
# Unicode bidirectional controls: they can make code read differently from how it runs.
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}

# CSS class of highlighted code; `static/highlight.css` holds the colours for it.
CODE_CLASS = "code"


def _visible(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str | None) -> str:
    """`text` with control and bidirectional-override characters shown as escape sequences."""
    if not text:
        return ""
    return "".join(_visible(ch) if ch not in _KEEP and (ch in _BIDI or unicodedata.category(ch) == "Cc") else ch
                   for ch in text)


def highlight_python(code: str | None) -> Markup:
    """Highlighted, escaped HTML (`<div class="code"><pre>...`) of untrusted Python source."""
    formatter = HtmlFormatter(cssclass=CODE_CLASS, linenos="inline", wrapcode=True)
    return Markup(highlight(printable(code), PythonLexer(stripnl=False, ensurenl=True), formatter))


def highlight_css() -> str:
    """The stylesheet for `highlight_python`'s classes (written once into `static/highlight.css`)."""
    return HtmlFormatter(cssclass=CODE_CLASS, style="default").get_style_defs(f".{CODE_CLASS}")
