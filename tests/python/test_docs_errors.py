"""The error messages quoted in docs/troubleshooting.md still occur in the code.

Every code span in a `###` heading of that page is a quoted message. In a quote, `…` stands for a
part that varies (a name, a number, a nested message); the fixed parts between them are checked:
each must occur, whole, inside one string literal of `src/` (Rust) or `python/` (Python), between
two of its placeholders (`{name}`, `{}`, `{x!r}`). So a quote cannot match across a value that is
filled in at run time, and rewording a message in the code fails this test until the page follows.

Needs neither the compiled engine nor Airflow: it reads files only.
"""

from __future__ import annotations

import ast
import functools
import re

import pytest

from _support import REPO

PAGE = REPO / "docs" / "troubleshooting.md"
#: Fixed parts shorter than this (after trimming punctuation) are not checked: `)`, `: `, `s`.
MIN_PART = 4
#: Each quote must have at least one fixed part this long, so that it says something checkable.
MIN_LONGEST = 12
_TRIM = " \t\n:;,."


# --------------------------------------------------------------------------- the page


def _code_spans(line: str) -> list[str]:
    """Code spans of a Markdown line (CommonMark: a run of N backticks closes at the next run of
    exactly N; one space is stripped from each end when both ends have one)."""
    spans = []
    i = 0
    while i < len(line):
        if line[i] != "`":
            i += 1
            continue
        j = i
        while j < len(line) and line[j] == "`":
            j += 1
        ticks = line[i:j]
        close = re.compile(rf"(?<!`){ticks}(?!`)")
        m = close.search(line, j)
        if m is None:
            i = j
            continue
        text = line[j : m.start()]
        if len(text) >= 2 and text.startswith(" ") and text.endswith(" ") and text.strip():
            text = text[1:-1]
        spans.append(text)
        i = m.end()
    return spans


def quoted_messages() -> list[tuple[int, str]]:
    """(line number, quote) for each code span in a `###` heading of the page."""
    out = []
    for n, line in enumerate(PAGE.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("### "):
            out.extend((n, span) for span in _code_spans(line[4:]))
    return out


def fixed_parts(quote: str) -> list[str]:
    parts = (p.strip(_TRIM) for p in quote.split("…"))
    return [p for p in parts if len(p) >= MIN_PART]


# --------------------------------------------------------------------------- the code

#: Placeholders of Rust `format!` strings and Python `str.format` strings.
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
_SEP = "\x00"


def _split_placeholders(text: str) -> str:
    """`a {x} b {{c}}` -> `a \\0 b {c}`: placeholders become separators, `{{`/`}}` braces."""
    text = text.replace("{{", "\x01").replace("}}", "\x02")
    text = _PLACEHOLDER.sub(_SEP, text)
    return text.replace("\x01", "{").replace("\x02", "}")


_RUST_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def _rust_unescape(body: str) -> str:
    body = re.sub(r"\\\n\s*", "", body)  # a line continuation drops the newline and indentation
    return re.sub(r"\\(.)", lambda m: _RUST_ESCAPES.get(m.group(1), m.group(0)), body)


_RUST_RAW_OPEN = re.compile(r'r(#*)"')
_RUST_CHAR = re.compile(r"'(?:[^'\\\n]|\\(?:u\{[0-9a-fA-F]+\}|x..|.))'")


def rust_strings(text: str) -> list[str]:
    """The string literals of Rust source, unescaped: a small scanner that skips comments and
    character literals (`'"'`) and tells lifetimes (`'a`) from them."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif (
            c == "r"
            and (raw := _RUST_RAW_OPEN.match(text, i))
            and not (i and (text[i - 1].isalnum() or text[i - 1] == "_"))
        ):
            hashes = raw.group(1)
            start = raw.end()
            end = text.find('"' + hashes, start)
            end = n if end < 0 else end
            out.append(text[start:end])
            i = end + 1 + len(hashes)
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(_rust_unescape(text[i + 1 : j]))
            i = j + 1
        elif c == "'":
            m = _RUST_CHAR.match(text, i)
            i = m.end() if m else i + 1  # a character literal, else a lifetime's quote
        else:
            i += 1
    return out


def rust_literals(text: str) -> list[str]:
    return [_split_placeholders(s) for s in rust_strings(text)]


def python_literals(text: str) -> list[str]:
    """Every string constant and f-string (implicit concatenation already joined by the parser);
    an f-string's replacement fields become separators."""
    out = []
    tree = ast.parse(text)
    in_fstrings = {
        id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values
    }
    for node in ast.walk(tree):
        if id(node) in in_fstrings:
            continue
        if isinstance(node, ast.JoinedStr):
            out.append(
                "".join(
                    v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else _SEP
                    for v in node.values
                )
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append(_split_placeholders(node.value))
    return out


@functools.cache
def code_pieces() -> tuple[str, ...]:
    pieces: list[str] = []
    for path in sorted((REPO / "src").rglob("*.rs")):
        for raw in rust_strings(path.read_text(encoding="utf-8")):
            # A plain literal may hold braces that are no placeholders (`${HUBSPOT_TOKEN}`).
            pieces.append(raw)
            pieces.extend(_split_placeholders(raw).split(_SEP))
    for path in sorted((REPO / "python").rglob("*.py")):
        for lit in python_literals(path.read_text(encoding="utf-8")):
            pieces.extend(lit.split(_SEP))
    return tuple(p for p in pieces if len(p) >= MIN_PART)


# --------------------------------------------------------------------------- tests


def test_the_literal_reader_sees_what_the_check_relies_on() -> None:
    """The extraction itself: placeholders split, escapes undone, concatenations joined."""
    rust = r"""let x = '"'; // a "comment
        let m = format!("environment variable {name} is not set; write `${{{name}:-default}}`");
        let c = "a long \
                 line";"""
    assert rust_literals(rust) == [
        f"environment variable {_SEP} is not set; write `${{{_SEP}:-default}}`",
        "a long line",
    ]
    py = 'raise X(f"no project: {where}, and the " "variable is not set")'
    assert python_literals(py) == [f"no project: {_SEP}, and the variable is not set"]


def test_the_page_quotes_messages() -> None:
    quotes = quoted_messages()
    assert len(quotes) >= 25, f"{PAGE} quotes only {len(quotes)} messages in its headings"


@pytest.mark.parametrize(("line", "quote"), quoted_messages(), ids=lambda v: str(v)[:50])
def test_quoted_message_occurs_in_the_code(line: int, quote: str) -> None:
    parts = fixed_parts(quote)
    assert parts and max(map(len, parts)) >= MIN_LONGEST, (
        f"docs/troubleshooting.md:{line}: the quote {quote!r} has no fixed part of "
        f"{MIN_LONGEST}+ characters; quote more of the message"
    )
    pieces = code_pieces()
    missing = [p for p in parts if not any(p in piece for piece in pieces)]
    assert not missing, (
        f"docs/troubleshooting.md:{line}: {missing!r} (from {quote!r}) occurs in no string "
        "literal of src/ or python/ (between placeholders); the message changed: update the page"
    )
