"""A small declarative schema for configuration: types, ranges, allowed keys, list vs scalar.

Checked on the driver before any Spark work (`--set` overrides included); every mistake is one line naming
the dotted key, what was given and what is expected, and all mistakes are reported together:

    preprocess.keep_langs: expected a list of strings, got the string 'zh' (write [zh])
    preprocess.lang_thresold: unknown key (did you mean lang_threshold?)

Usage:
    SCHEMA = Section({"lang_threshold": Float(0, 1), "keep_langs": List(Str(), min_len=1), ...})
    errors = SCHEMA.check(cfg["preprocess"], "preprocess")   # [] when valid
    validate(SCHEMA, cfg, "preprocess")                      # raises ConfigError with every line
"""
from __future__ import annotations

import difflib
import re
from typing import Any, Callable, Iterable, Iterator, Mapping


class ConfigError(ValueError):
    """One or more configuration mistakes; str() is one line per mistake."""

    def __init__(self, errors: Iterable[str]):
        self.errors = list(errors)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.errors))


def _show(v: Any) -> str:
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        return f"a list {list(v)!r}"[:80]
    if isinstance(v, dict):
        return "a mapping"
    return f"{type(v).__name__} {v!r}"


class Spec:
    """Base: `check(value, key) -> list[str]`. `nullable=True` also accepts null."""

    expected = "a value"

    def __init__(self, nullable: bool = False, doc: str = ""):
        self.nullable = nullable
        self.doc = doc

    def check(self, value: Any, key: str) -> list[str]:
        if value is None:
            return [] if self.nullable else [f"{key}: expected {self.expected}, got null"]
        return self._check(value, key)

    def _check(self, value: Any, key: str) -> list[str]:
        return []


class Any_(Spec):
    expected = "any value"


class Bool(Spec):
    expected = "true or false"

    def _check(self, value, key):
        return [] if isinstance(value, bool) else [f"{key}: expected {self.expected}, got {_show(value)}"]


class _Number(Spec):
    kind = "a number"

    def __init__(self, min: float | None = None, max: float | None = None, *, min_exclusive: bool = False,
                 nullable: bool = False, doc: str = ""):
        super().__init__(nullable, doc)
        self.min, self.max, self.min_exclusive = min, max, min_exclusive

    @property
    def expected(self):
        lo = "" if self.min is None else (f"> {self.min}" if self.min_exclusive else f">= {self.min}")
        hi = "" if self.max is None else f"<= {self.max}"
        rng = " and ".join(x for x in (lo, hi) if x)
        return self.kind + (f" {rng}" if rng else "")

    def _ok_type(self, value) -> bool:
        raise NotImplementedError

    def _check(self, value, key):
        if not self._ok_type(value):
            return [f"{key}: expected {self.expected}, got {_show(value)}"]
        if self.min is not None and (value < self.min or (self.min_exclusive and value == self.min)):
            return [f"{key}: expected {self.expected}, got {value!r}"]
        if self.max is not None and value > self.max:
            return [f"{key}: expected {self.expected}, got {value!r}"]
        return []


class Int(_Number):
    kind = "an integer"

    def _ok_type(self, value):
        return isinstance(value, int) and not isinstance(value, bool)


class Float(_Number):
    kind = "a number"

    def _ok_type(self, value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)


class Str(Spec):
    def __init__(self, choices: Iterable[str] | None = None, *, non_empty: bool = False, nullable: bool = False,
                 doc: str = ""):
        super().__init__(nullable, doc)
        self.choices = list(choices) if choices is not None else None
        self.non_empty = non_empty

    @property
    def expected(self):
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        return "a non-empty string" if self.non_empty else "a string"

    def _check(self, value, key):
        if not isinstance(value, str):
            return [f"{key}: expected {self.expected}, got {_show(value)}"]
        if self.choices is not None and value not in self.choices:
            close = difflib.get_close_matches(value, self.choices, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return [f"{key}: expected {self.expected}, got {value!r}{hint}"]
        if self.non_empty and not value.strip():
            return [f"{key}: expected {self.expected}, got an empty string"]
        return []


class Path(Str):
    """A file or directory path/URI (existence is checked by the stage that loads it, which names it)."""

    expected = "a path or URI"

    def __init__(self, nullable: bool = False, doc: str = ""):
        super().__init__(non_empty=True, nullable=nullable, doc=doc)

    @property
    def expected(self):  # noqa: F811 - overrides Str.expected
        return "a path or URI"


class List(Spec):
    def __init__(self, item: Spec, *, min_len: int = 0, unique: bool = False, nullable: bool = False,
                 doc: str = ""):
        super().__init__(nullable, doc)
        self.item, self.min_len, self.unique = item, min_len, unique

    @property
    def expected(self):
        item = self.item.expected
        for article in ("a ", "an "):
            if item.startswith(article):
                item = item[len(article):]
        item = re.sub(r"\b(string|integer|number|mapping|list)\b", r"\1s", item, count=1)   # a list of strings
        return f"a list of {item}" + (f" with at least {self.min_len} item(s)" if self.min_len else "")

    def _check(self, value, key):
        if not isinstance(value, (list, tuple)):
            hint = f" (write [{value}])" if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
            return [f"{key}: expected {self.expected}, got {_show(value)}{hint}"]
        errs = []
        if len(value) < self.min_len:
            errs.append(f"{key}: expected {self.expected}, got {len(value)}")
        for i, v in enumerate(value):
            errs += self.item.check(v, f"{key}[{i}]")
        if self.unique and len({repr(v) for v in value}) != len(value):
            errs.append(f"{key}: items must be unique, got {list(value)!r}")
        return errs


class Map(Spec):
    """A mapping with free keys (checked by `keys`) and values of one spec (`values`)."""

    def __init__(self, values: Spec, keys: Spec | None = None, *, nullable: bool = False, doc: str = ""):
        super().__init__(nullable, doc)
        self.values, self.keys = values, keys or Str()

    @property
    def expected(self):
        return f"a mapping to {self.values.expected}"

    def _check(self, value, key):
        if not isinstance(value, Mapping):
            return [f"{key}: expected {self.expected}, got {_show(value)}"]
        errs = []
        for k, v in value.items():
            errs += self.keys.check(k, f"{key} key") if not isinstance(self.keys, Str) else (
                [] if isinstance(k, (str, int)) else [f"{key}: key {k!r} must be a string"])
            errs += self.values.check(v, f"{key}.{k}")
        return errs


class OneOf(Spec):
    """The first alternative that accepts the value wins (e.g. a number or a per-language mapping)."""

    def __init__(self, *alternatives: Spec, nullable: bool = False, doc: str = ""):
        super().__init__(nullable, doc)
        self.alternatives = alternatives

    @property
    def expected(self):
        return " or ".join(a.expected for a in self.alternatives)

    def _check(self, value, key):
        best = None
        for a in self.alternatives:
            errs = a.check(value, key)
            if not errs:
                return []
            best = best or errs
        return [f"{key}: expected {self.expected}, got {_show(value)}"]


class Section(Spec):
    """A mapping with known keys. Unknown keys are errors (with a spelling hint) unless `open=True`;
    keys listed in `required` must be present (default: every key whose spec is not nullable)."""

    expected = "a mapping"

    def __init__(self, fields: Mapping[str, Spec], *, open: bool = False, required: Iterable[str] | None = None,
                 nullable: bool = False, doc: str = "", extra: Callable[[dict, str], list[str]] | None = None):
        super().__init__(nullable, doc)
        self.fields = dict(fields)
        self.open = open
        self.required = set(required) if required is not None else {k for k, s in self.fields.items()
                                                                    if not s.nullable}
        self.extra = extra

    def _check(self, value, key):
        if not isinstance(value, Mapping):
            return [f"{key}: expected {self.expected}, got {_show(value)}"]
        errs = []
        prefix = f"{key}." if key else ""
        for k, v in value.items():
            spec = self.fields.get(str(k))
            if spec is None:
                if not self.open:
                    close = difflib.get_close_matches(str(k), list(self.fields), n=1)
                    hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(sorted(self.fields))})"
                    errs.append(f"{prefix}{k}: unknown key{hint}")
                continue
            errs += spec.check(v, f"{prefix}{k}")
        for k in sorted(self.required):
            if k not in value:
                errs.append(f"{prefix}{k}: missing (expected {self.fields[k].expected})")
        if not errs and self.extra is not None:
            errs += self.extra(dict(value), key)
        return errs


def validate(spec: Spec, value: Any, key: str = "") -> None:
    errs = spec.check(value, key)
    if errs:
        raise ConfigError(errs)


# ---------------------------------------------------------------- paths, and shorthands every section uses
class File(Path):
    """A file that must exist when the section that names it runs (a model, a lexicon). `config.load_conf`
    resolves relative ones against the configuration file's repository root; `config.missing_files` lists
    the ones that do not exist (a job checks its own sections before any task runs)."""

    @property
    def expected(self):
        return "a file path or URI"


class Dir(Path):
    """A directory path or URI (model directories, lexicon folders); resolved like `File`."""

    @property
    def expected(self):
        return "a directory path or URI"


def optional_section(fields: Mapping[str, Spec], **kw) -> Section:
    """A section whose keys are all optional (the shipped YAML supplies every default) but never unknown."""
    return Section(fields, required=kw.pop("required", ()), **kw)


def Prob(**kw) -> Float:
    """A share, a probability, a ratio."""
    return Float(0, 1, **kw)


def Count(lo: int = 0, **kw) -> Int:
    return Int(lo, **kw)


def Langs(**kw) -> List:
    """A list of pipeline language codes."""
    return List(Str(non_empty=True), **kw)


Scalar = OneOf(Str(), Int(), Float(), Bool())


def path_keys(spec: Spec, value: Any, key: str = "") -> Iterator[tuple[str, Spec, Any, Any, Any]]:
    """(dotted key, spec, value, container, index) for every File/Dir value in a validated `value`."""
    if isinstance(spec, Path) and isinstance(value, str):
        yield key, spec, value, None, None
        return
    if isinstance(spec, OneOf):
        for alt in spec.alternatives:
            if not alt.check(value, key):
                yield from path_keys(alt, value, key)
                return
        return
    if isinstance(spec, Section) and isinstance(value, Mapping):
        for k, v in value.items():
            sub = spec.fields.get(str(k))
            if sub is not None:
                yield from _child(sub, v, f"{key}.{k}" if key else str(k), value, k)
    elif isinstance(spec, Map) and isinstance(value, Mapping):
        for k, v in value.items():
            yield from _child(spec.values, v, f"{key}.{k}", value, k)
    elif isinstance(spec, List) and isinstance(value, list):
        for i, v in enumerate(value):
            yield from _child(spec.item, v, f"{key}[{i}]", value, i)


def _child(spec, v, key, container, index):
    if isinstance(spec, Path) and isinstance(v, str):
        yield key, spec, v, container, index
    else:
        yield from path_keys(spec, v, key)
