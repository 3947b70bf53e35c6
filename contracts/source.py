"""Parsing program source that nasloop did not write (LEMUR files, LLM samples, candidates).

One place decides how: the program's own warnings (invalid escapes...) are silenced, and every way
the parser can refuse a text (syntax, null bytes, nesting too deep for the parser or the compiler's
stack, memory) becomes a `SourceProblem` instead of an exception.
"""

from __future__ import annotations

import ast
import threading
import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceProblem:
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return self.message + (f" (line {self.line})" if self.line else "")


# One parse at a time per process: CPython 3.11 keeps the AST converter's recursion counter in
# interpreter state shared by all threads (gh-106905), so two threads parsing at once (the host
# checks candidates from a thread pool) can fail with "SystemError: AST constructor recursion depth
# mismatch". `warnings.catch_warnings` is not thread-safe either.
_PARSE_LOCK = threading.Lock()


def parse_source(text: str, filename: str = "<program>") -> ast.Module | SourceProblem:
    """The module's AST, or why it cannot be parsed."""
    try:
        with _PARSE_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(text, filename=filename)
    except SyntaxError as exc:
        return SourceProblem(f"SyntaxError: {exc.msg}", exc.lineno)
    except ValueError as exc:  # null bytes
        return SourceProblem(f"ValueError: {exc}")
    except (RecursionError, MemoryError) as exc:  # nesting beyond the parser's limits
        return SourceProblem(f"{type(exc).__name__}: the program is nested too deeply to parse")


def parses(text: str | None) -> bool:
    return text is not None and isinstance(parse_source(text), ast.Module)
