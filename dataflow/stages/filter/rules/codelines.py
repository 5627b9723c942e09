"""Code listings inside a page: the lines of a program, found by their syntax, not by any one language.

A page of Chinese prose often carries a code listing (a blog post, vendor documentation, a Q&A answer); the
identifiers and English comments of the code are no natural language of the page, as digits and symbols
are none. `code_spans` gives the character spans of the lines that belong to a code block:

- a candidate run is a maximal sequence of non-blank lines with no Han character that are not English prose
  (blank lines neither end nor join a run; a Han line or a prose line ends it). A prose line ends in a
  sentence end with >= 3 words, or holds >= 6 words and a sentence break, and opens with no statement;
- a line shows programming syntax when it has an assignment (`x = 1`, `a.b += 2`), a call (`name(...)`),
  a comment marker (`#`, `//`, `/*`, `--`, `'`, `REM` or a docstring's triple quote opening the line, or
  `//` `#` `'` after code), ends in `{` or `}` (or `;` after code, not after words of verse), is made of
  brackets alone, or is a short statement led by a keyword (`return x`, `else:`, `import os`, `Dim x`);
- a run is code when at least two of its lines show syntax and they are at least half of its lines, so a
  line with none of these inside the block (`MsgBox x`, `Option Explicit`) is code too.

Not code: English prose, navigation lists (short lines with no syntax: the run has no syntax lines) and rows
of cells (`a | b | c`, or DP's tab-separated table rows).
"""
from __future__ import annotations

import re

from dataflow.core.text import has_han
from dataflow.stages.filter.rules.text import is_table_row

# atomic groups and token-bound starts keep every pattern linear in the line (a minified or base64 line)
_IDENT = r"(?>[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*|\[[^\]\s]*\])*)"
_ASSIGN = re.compile(rf"(?:^|[\s(;,{{]){_IDENT}\s*(?:[-+*/%|&^:.]|<<|>>|\?\?)?=(?![=>~])")
# not "file(s)", "match(es)", nor a manual page named with its section: ls(1), systemd.unit(5), printf(3p)
_CALL = re.compile(r"(?<![\w$.])(?>[A-Za-z_$][\w$.]*)\((?!s\)|es\)|\d\w?\))")
_LEAD_ASSIGN = re.compile(rf"^\s*(?:(?:var|let|const|local|my|set|export|Dim|Set|Let)\s+)?{_IDENT}\s*"
                          rf"(?:[-+*/%|&^:.]|<<|>>|\?\?)?=(?![=>~])", re.IGNORECASE)
_LEAD_CALL = re.compile(rf"^\s*(?:(?:return|await|yield|print|echo|call)\s+)?{_IDENT}\(", re.IGNORECASE)
_LEAD_COMMENT = re.compile(r"^\s*(?:\"\"\"|#|//|/\*|\*/|--|'|REM\b|%\s|;\s)", re.IGNORECASE)
_TRAIL_COMMENT = re.compile(r"\S\s+(?://|#|')\s")
_ENDS = re.compile(r"[;{}]\s*$")
_BRACKETS = re.compile(r"^\s*[()\[\]{};,]+\s*$")
# a short statement led by a keyword of common languages (lowercase, as the languages write them; Basic's
# capitalised ones): `return x`, `else:`, `import os`, `Dim x`. Not one ending in a comma or a full stop.
_KEYWORDS = frozenset("""
    return def class import from elif else try except finally raise pass break continue lambda yield async
    await with while for if fi then done esac case switch do end endif endfor endwhile function func fn var let
    const local export set unset echo print println printf package use require include public private protected
    static void int char float double bool boolean struct enum typedef namespace template new delete goto throw
    throws catch begin unless until foreach select from where
    Sub Dim ReDim ElseIf Wend Loop Next End
""".split())
_WORD = re.compile(r"[^\W\d_]{2,}")
_PUNCT = ".,;:!?\"'()[]"
_SENTENCE_END = re.compile(r"[^.][.!?]['\")\]]?$")          # not an ellipsis `...`
_SENTENCE_BREAK = re.compile(r"[a-z][.!?]['\")\]]?\s+[A-Z]")


def _cells(line: str) -> bool:
    return is_table_row(line) or line.count(" | ") >= 2 or line.strip().startswith("|")


def _syntax(line: str) -> bool:
    if _cells(line):
        return False
    if _LEAD_COMMENT.search(line) or _ASSIGN.search(line) or _CALL.search(line) or _BRACKETS.search(line):
        return True
    toks = line.split()
    if _TRAIL_COMMENT.search(line) or line.rstrip().endswith(("{", "}")):
        return True
    if line.rstrip().endswith(";"):             # `x++;`, `use strict;`; not a line of verse or prose ending in ';'
        return len(toks) <= 3 or not all(_WORD.fullmatch(t.strip(_PUNCT)) for t in toks)
    return toks[0].rstrip(":") in _KEYWORDS and (len(toks) <= 4 or line.rstrip().endswith(":")) \
        and not line.rstrip().endswith((",", "."))


def _prose(line: str) -> bool:
    """A line that reads as English sentences: it ends in a sentence end and has >= 3 words in letters, or it
    has >= 6 such words making up most of its tokens and a full stop followed by a capital inside. A sentence
    may name a call or a setting (`see ls(1)`, "with PID=1 (i.e. ..."); a statement opens with it, and a
    comment carries its marker: those are not prose."""
    s = line.strip()
    if (_LEAD_COMMENT.search(s) or _LEAD_ASSIGN.search(s) or _LEAD_CALL.search(s) or _ENDS.search(s)
            or _TRAIL_COMMENT.search(s)):
        return False
    toks = s.split()
    words = sum(1 for t in toks if _WORD.fullmatch(t.strip(_PUNCT)))
    if _SENTENCE_END.search(s):
        return words >= 3
    return words >= 6 and words >= 0.7 * len(toks) and bool(_SENTENCE_BREAK.search(s))


def code_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans in `text` of the lines that belong to code blocks, in order."""
    spans: list[tuple[int, int]] = []
    run: list[tuple[int, int, bool]] = []            # (start, end, shows syntax) of the current run

    def close():
        n_syn = sum(1 for _, _, s in run if s)
        if n_syn >= 2 and 2 * n_syn >= len(run):
            spans.extend((a, b) for a, b, _ in run)
        run.clear()

    pos = 0
    for line in text.split("\n"):
        start, end = pos, pos + len(line)
        pos = end + 1
        if not line.strip():
            continue
        if has_han(line) or _prose(line):
            close()
            continue
        run.append((start, end, _syntax(line)))
    close()
    return spans
