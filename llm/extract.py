"""Pull the program out of a model's answer.

Rules, in order (the first that yields code wins):
1. the longest fenced block tagged as Python (```python, ```py, ...);
2. else the longest fenced block of any or no language;
3. else the text from the first line that starts with `import`, `from`, `class` or `def`, if it parses
   (trailing prose after the code is dropped line by line until it does);
4. else None: an extraction failure, recorded as such by the caller.

A fence left open at the end (a sample cut off by the token limit) counts as a block that runs to the end
of the text; whether that code parses is for the validity check to find out, not for extraction.
"""

from __future__ import annotations

import re

from contracts.source import parses

_PYTHON_TAGS = {"python", "python3", "py", "py3", "pytorch"}
_OPEN_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*?)[ \t]*$")
_CODE_START = re.compile(r"^(import|from|class|def)\b")
# Trailing prose is dropped by at most this many lines: enough for a closing paragraph, bounded cost.
_MAX_TRAILING_LINES = 200
_MAX_STARTS = 20


def extract_code(text: str) -> str | None:
    """The program in `text`, or None if there is none (see the module docstring for the rules)."""
    if not text:
        return None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = _fenced_blocks(text)
    python = [code for tag, code in blocks if tag in _PYTHON_TAGS]
    for candidates in (python, [code for _, code in blocks]):
        candidates = [c for c in candidates if c.strip()]
        if candidates:
            return max(candidates, key=len).strip("\n")
    return _bare_code(text)


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language tag, body) of every fenced block, in order; an unterminated last block runs to the end."""
    blocks: list[tuple[str, str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        opening = _OPEN_FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence = opening["fence"]
        tag = opening["info"].split()[0].lower() if opening["info"] else ""
        body: list[str] = []
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            # A closing fence uses the same character, at least as long, with nothing after it.
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            body.append(lines[i])
            i += 1
        blocks.append((tag, "\n".join(body)))
        i += 1
    return blocks


def _bare_code(text: str) -> str | None:
    lines = text.split("\n")
    # Prose can start with "from" too: try each plausible first line in turn.
    starts = [i for i, line in enumerate(lines) if _CODE_START.match(line)][:_MAX_STARTS]
    for start in starts:
        code = _trim_trailing_prose(lines[start:])
        if code is not None:
            return code
    return None


def _trim_trailing_prose(code: list[str]) -> str | None:
    for _ in range(min(len(code), _MAX_TRAILING_LINES)):
        candidate = "\n".join(code).strip("\n")
        if candidate and parses(candidate):
            return candidate
        # Only unindented (or blank) lines can be prose after the code; an indented line is code.
        if code[-1].strip() and code[-1][:1] in (" ", "\t"):
            return None
        code = code[:-1]
        if not code:
            return None
    return None

