"""Where text a candidate or the LLM produced becomes highlighted HTML.

Everything else in the pages goes through Jinja2's autoescaping, after `orchestrator.untrusted.printable`
made its control characters (ANSI escapes, NUL, bidirectional overrides) visible as `\\x1b`-style
text (the app's `finalize`). Code is coloured by Pygments, whose HTML formatter escapes every token it
writes; the result is `Markup` only after that escaping.
"""

from __future__ import annotations

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from orchestrator.untrusted import printable

# CSS class of highlighted code; `static/highlight.css` holds the colours for it.
CODE_CLASS = "code"


def highlight_python(code: str | None) -> Markup:
    """Highlighted, escaped HTML (`<div class="code"><pre>...`) of untrusted Python source."""
    formatter = HtmlFormatter(cssclass=CODE_CLASS, linenos="inline", wrapcode=True)
    return Markup(highlight(printable(code or ""), PythonLexer(stripnl=False, ensurenl=True), formatter))


def highlight_css() -> str:
    """The stylesheet for `highlight_python`'s classes (written once into `static/highlight.css`)."""
    return HtmlFormatter(cssclass=CODE_CLASS, style="default").get_style_defs(f".{CODE_CLASS}")
