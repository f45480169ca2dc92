"""Sanitising student-influenced text into bounded plain lines, and escaping it for Markdown."""

from __future__ import annotations

import unicodedata

#: Unicode categories that never reach a reader: controls (``\r``, ``\x1b``, ``\x85``), format
#: characters (bidi overrides, zero-width joiners), line/paragraph separators (U+2028/U+2029)
#: and spaces other than " " (each becomes a single space).
_BLANK = frozenset({"Cc", "Cf", "Zl", "Zp", "Zs"})
#: ASCII punctuation that means something to CommonMark, GitHub Markdown or its extensions
#: (emphasis, code, links, images, headings, lists, quotes, tables, strikethrough, math,
#: autolinks, emoji): escaped with a backslash, which every CommonMark reader shows literally.
_MARKDOWN = frozenset("\\`*_{}[]()#+-.!|~$:@^=")
#: HTML's special characters, replaced by entities (a Markdown reader passes HTML through).
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}

#: Lengths of the fields of a worker's error report: message, exception type name, and
#: "where" ("cell <id>, line <n>"). The worker cuts them, and the grader again (it must not
#: rely on the worker, which runs student code).
MAX_MESSAGE = 400
MAX_TYPE = 80
MAX_WHERE = 120


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a hostile __str__
        return "(unprintable)"


def one_line(value: object, limit: int = 500) -> str:
    """``value`` as one line of at most ``limit`` characters: each run of whitespace, control,
    format or separator characters becomes one space, a lone surrogate (which no UTF-8 file
    can hold) becomes U+FFFD, and longer text is cut, ending in "..."."""
    text = _text(value)[: 8 * limit + 8]  # bounds the work on a hostile message
    out: list[str] = []
    blank = False
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in _BLANK or ch.isspace():
            blank = True
            continue
        if blank and out:
            out.append(" ")
        blank = False
        out.append("\ufffd" if cat == "Cs" else ch)
    line = "".join(out)
    return line if len(line) <= limit else line[: max(limit - 3, 0)] + "..."


def markdown(value: object, limit: int = 500) -> str:
    """``one_line(value, limit)`` escaped so that Markdown (and HTML inside it) shows it as
    literal text: it cannot start a heading, list, quote or table row, emphasise, link, close
    a table cell, or add a line."""
    return "".join(_HTML.get(ch) or ("\\" + ch if ch in _MARKDOWN else ch)
                   for ch in one_line(value, limit))
