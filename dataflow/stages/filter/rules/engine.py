"""Apply the active rules to one document: pure Python over str, no Spark (testable on its own).

Order (Ziya2): every document rule, then every paragraph rule, then every sentence rule, then the final
rules on what is left; within a level, the configured order (registry.all_rules). A document or final rule
rejects the document (a rejected document keeps its input text). A paragraph/sentence rule
removes its unit (a rule `quiet` on the document, e.g. a lexicon with no hit in it, is skipped: it would remove
nothing); after each rule the engine checks the remaining text against `filter.min_chars_left`
(per language), and a document that falls under it (or becomes empty) is rejected with that rule as its
reason. All bookkeeping lives here.

    engine = RuleEngine(cfg["filter"])     # checks filter.rules first: a bad parameter fails here
    outcome = engine.filter_text(text, "en")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from dataflow.core.confschema import validate
from dataflow.stages.filter.rules.base import per_lang
from dataflow.stages.filter.rules.registry import SETTINGS, ActiveRule, active_rules
from dataflow.stages.filter.rules.text import Doc, split_sentences


@dataclass
class Outcome:
    text: str                       # the rewritten text (the input text when rejected)
    reason: str | None = None       # the rule that rejected the document, None if kept
    detail: str | None = None
    units: dict[str, int] = field(default_factory=dict)   # rule -> documents/paragraphs/sentences removed
    chars: dict[str, int] = field(default_factory=dict)   # rule -> characters removed
    removed: dict[str, list[str]] = field(default_factory=dict)  # rule -> its first removed units (audit examples)

    @property
    def changed(self) -> bool:
        return self.reason is None and bool(self.units)


class RuleEngine:
    """The enabled rules of one `filter` configuration, checked and resolved once (picklable for Spark)."""

    def __init__(self, filter_cfg: Mapping[str, Any]):
        for key, spec in SETTINGS.items():
            validate(spec, filter_cfg.get(key), f"filter.{key}")
        self.rules = active_rules(filter_cfg)
        self.min_chars_left = dict(filter_cfg["min_chars_left"])

    def filter_text(self, text: str, lang: str | None, keep_removed: int = 0) -> Outcome:
        return filter_text(text, lang, self.rules, keep_removed, per_lang(self.min_chars_left, lang))


def filter_text(text: str, lang: str | None, rules: list[ActiveRule], keep_removed: int = 0,
                min_chars_left: int = 1) -> Outcome:
    """Apply `rules` (already in application order) to one text. `keep_removed`: how many removed units per
    rule to keep in `Outcome.removed` (audit examples); `min_chars_left`: the floor after unit removal
    (1: only an emptied document is rejected). RuleEngine.filter_text passes the configured floor."""
    doc = Doc(text, lang)
    applicable = [r for r in rules if r.applies_to(lang)]
    out = Outcome(text=text)

    for r in applicable:
        if r.level != "document":
            continue
        detail = r.fn(doc, r.params)
        if detail:
            out.reason, out.detail = r.name, detail
            out.units[r.name] = 1
            out.chars[r.name] = len(text)
            return out

    floor = max(int(min_chars_left), 1)
    lines = text.split("\n")
    alive = [bool(ln.strip()) for ln in lines]          # blank lines are kept as separators, never judged
    blank = [not a for a in alive]
    sentences: dict[int, list[str]] = {}                 # line index -> sentences, once a sentence rule runs
    sent_alive: dict[int, list[bool]] = {}

    def remaining() -> int:
        """Characters left, measured like length.min_chars (surrounding whitespace of each line not counted)."""
        n = 0
        for i, ln in enumerate(lines):
            if not alive[i]:
                continue
            if i in sentences:
                n += len("".join(s for s, a in zip(sentences[i], sent_alive[i]) if a).strip())
            else:
                n += len(ln.strip())
        return n

    def reject_if_short(r: ActiveRule, removed: int) -> bool:
        left = remaining()
        if removed and left < floor:
            out.reason = r.name
            out.detail = f"{left} chars left < {floor} after {r.name} removed {removed} {r.level}(s)"
            return True
        return False

    for r in applicable:
        if r.level != "paragraph" or _quiet(r, doc):
            continue                # a quiet rule removes nothing: no unit to ask
        removed = 0
        for i, ln in enumerate(lines):
            if alive[i] and r.fn(ln, doc, r.params):
                alive[i] = False
                removed += 1
                out.chars[r.name] = out.chars.get(r.name, 0) + len(ln) + 1   # the line and its newline
                if removed <= keep_removed:
                    out.removed.setdefault(r.name, []).append(ln)
        if removed:
            out.units[r.name] = removed
        if reject_if_short(r, removed):
            out.chars[r.name] += remaining()
            return out

    sentence_rules = [r for r in applicable if r.level == "sentence" and not _quiet(r, doc)]
    if sentence_rules:              # split only when some rule may remove a sentence
        for i, ln in enumerate(lines):
            if alive[i]:
                sentences[i] = split_sentences(ln)
                sent_alive[i] = [True] * len(sentences[i])
    for r in sentence_rules:
        removed = 0
        for i, sents in sentences.items():
            if not alive[i]:
                continue
            flags = sent_alive[i]
            for j, s in enumerate(sents):
                if flags[j] and s.strip() and r.fn(s, doc, r.params):
                    flags[j] = False
                    removed += 1
                    out.chars[r.name] = out.chars.get(r.name, 0) + len(s)
                    if removed <= keep_removed:
                        out.removed.setdefault(r.name, []).append(s)
            if not any(flags):
                alive[i] = False     # every sentence gone: the line goes too (its newline with it)
                out.chars[r.name] = out.chars.get(r.name, 0) + 1
        if removed:
            out.units[r.name] = removed
        if reject_if_short(r, removed):
            out.chars[r.name] += remaining()
            return out

    if out.units:
        kept = []
        for i, ln in enumerate(lines):
            if blank[i]:
                kept.append(ln)
            elif alive[i]:
                kept.append("".join(s for s, a in zip(sentences[i], sent_alive[i]) if a) if i in sentences else ln)
        out.text = "\n".join(kept)

    for r in applicable:            # final rules judge what is left (C4's page drop after its line filters)
        if r.level != "final":
            continue
        detail = r.fn(Doc(out.text, lang) if out.units else doc, r.params)
        if detail:
            out.reason, out.detail = r.name, detail
            out.units[r.name] = 1
            out.chars[r.name] = len(out.text)
            out.text = text
            return out
    return out


def _quiet(r: ActiveRule, doc: Doc) -> bool:
    """The rule declares it fires on no unit of this document (base.Rule.quiet; a rule object without the
    attribute, as a test's tracing wrapper, is asked unit by unit)."""
    quiet = getattr(r, "quiet", None)
    return quiet is not None and quiet(doc, r.params)
