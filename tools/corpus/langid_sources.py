"""`make data`, language-ID part: human-translated text in ~100 languages from Debian translation catalogues.

  python -m tools.corpus.langid_sources --root build/corpus [--skip-fetch]

GNU gettext catalogues (`.mo`, compiled from the `.po` files of the Translation Project, GNOME, Debian) hold
each English source string (msgid) with its human translation (msgstr) per locale. The packages below ship
catalogues for 40-110 locales each; together they give real technical prose (messages, help texts, setting
descriptions) in ~90 languages with >= 50k characters each. Output, under ROOT/out/langid/:

  samples.jsonl  one line per string: group (hash of the msgid, so every translation of one source string
                 falls on the same side of the train/holdout split), lang (pipeline code), locale (the
                 catalogue's directory name), source (package:domain), text (markup and placeholders removed)
  VERSIONS       the exact package files used

English comes from the msgids. Untranslated entries (msgstr == msgid) are dropped. Reserved evaluation
packages (issue 14) and the project's quality-set packages are not used here.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import struct
import sys
import time

from .fetch import fetch

# Each ships .mo catalogues for many locales (counts from bookworm): GTK 3 (~110), GLib (~100), gdk-pixbuf
# (~107), AT-SPI (~102), gsettings schemas (57, long descriptions), PAM (82), PackageKit (70), util-linux,
# e2fsprogs, glibc, GnuPG, GCC (long option help), bash (builtin help texts), apt, dpkg, coreutils, wget.
PACKAGES = ["libgtk-3-common", "libgtk2.0-common", "libglib2.0-data", "gsettings-desktop-schemas",
            "libgdk-pixbuf2.0-common", "at-spi2-common", "libpam-runtime", "packagekit", "util-linux-locales",
            "e2fsprogs-l10n", "libc-l10n", "gnupg-l10n", "gcc-12-locales", "bash", "apt", "dpkg", "coreutils",
            "wget"]

# Never used for language-ID training: reserved for independent evaluation (issue 14) or held out as the
# project's own quality set.
RESERVED = re.compile(r"^(installation-guide|debian-faq|maint-guide|developers-reference|debian-edu-doc|"
                      r"manpages-zh$|debian-handbook|libreoffice-help)")

# Locale directory -> pipeline code. Chinese variants are one pipeline language (DP keeps `zh`); regional
# variants fold into their language. Script variants that would teach one label two scripts are skipped.
LOCALE_MAP = {"zh_CN": "zh", "zh_TW": "zh", "zh_HK": "zh", "zh_SG": "zh", "zh_Hans": "zh", "zh_Hant": "zh",
              "no": "nb", "mo": "ro", "ca@valencia": "ca"}
SKIP_LOCALES = {"az_IR", "pa_PK"}  # Arabic-script Azerbaijani and Punjabi: other script than az/pa


def locale_lang(loc: str) -> str | None:
    """Pipeline language code of a locale directory name, or None for a variant not used as a label."""
    if loc in LOCALE_MAP:
        return LOCALE_MAP[loc]
    if "@" in loc or loc in SKIP_LOCALES or loc.startswith("en"):
        return None  # sr@latin, be@latin, uz@cyrillic, en@shaw, ...; English comes from the msgids
    return loc.split("_")[0].split(".")[0].lower() or None


def read_mo(path: str) -> list[tuple[str, str]]:
    """(msgid, first msgstr) pairs of a compiled GNU gettext catalogue; the header entry is skipped."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    end = "<" if magic == 0x950412DE else ">"
    n, ids_at, strs_at = struct.unpack(end + "3I", data[8:20])
    out = []
    for i in range(n):
        id_len, id_off = struct.unpack(end + "2I", data[ids_at + 8 * i: ids_at + 8 * i + 8])
        st_len, st_off = struct.unpack(end + "2I", data[strs_at + 8 * i: strs_at + 8 * i + 8])
        msgid = data[id_off: id_off + id_len].split(b"\0")[0].split(b"\x04")[-1]  # singular, context dropped
        msgstr = data[st_off: st_off + st_len].split(b"\0")[0]
        if msgid:
            out.append((msgid.decode("utf-8", "replace"), msgstr.decode("utf-8", "replace")))
    return out


_MARKUP = re.compile(r"<[^<>\n]{1,80}>|&[a-z]+;|&#\d+;")
_PLACEHOLDER = re.compile(r"%(\d+\$)?[-+ #0']*(\d+|\*)?(\.\d+)?(hh|h|ll|l|L|q|j|z|t|I64|I)?[a-zA-Z%]"
                          r"|%\(?\w+\)?[sd]?|\$\{?\w+\}?|\{\w*\}|\\[ntr]")
_ACCEL = re.compile(r"(?<=\w)[_&](?=\w)|(?<![\w&])[_&](?=\w)")


def clean_string(s: str) -> str:
    """Catalogue string as running text: markup, printf/shell placeholders and mnemonic markers removed."""
    s = _PLACEHOLDER.sub(" ", _MARKUP.sub(" ", s))
    s = _ACCEL.sub("", s)
    return " ".join(s.split())


def is_text(s: str, min_letters: int = 6, min_letter_share: float = 0.6) -> bool:
    """Enough letters to be language rather than an identifier list, a path or a format string (6 letters:
    a short word pair; 60%: below that a string is mostly digits, paths or punctuation)."""
    chars = [c for c in s if not c.isspace()]
    letters = sum(c.isalpha() for c in chars)
    return letters >= min_letters and letters >= min_letter_share * len(chars)


def group_of(msgid: str) -> str:
    return hashlib.sha1(msgid.encode("utf-8")).hexdigest()[:16]


def catalogue_samples(x: str):
    """Yield sample dicts for every usable translated string (and each msgid once, as English)."""
    seen_en: set = set()
    for path in sorted(glob.glob(f"{x}/*/usr/share/locale/*/LC_MESSAGES/*.mo")):
        parts = os.path.relpath(path, x).split(os.sep)
        pkg, loc, domain = parts[0], parts[-3], parts[-1][:-3]
        lang = locale_lang(loc)
        if lang is None:
            continue
        source = f"{pkg}:{domain}"
        for msgid, msgstr in read_mo(path):
            en = clean_string(msgid)
            if en and en not in seen_en and is_text(en):
                seen_en.add(en)
                yield {"group": group_of(msgid), "lang": "en", "locale": "C", "source": source, "text": en}
            text = clean_string(msgstr)
            if text and text.casefold() != en.casefold() and is_text(text):
                yield {"group": group_of(msgid), "lang": lang, "locale": loc, "source": source, "text": text}


# Characters kept per language (a balanced sample; the trainer takes at most ~150k of them for training and
# the rest of the held-out share for evaluation). 250k keeps samples.jsonl ~30 MB for ~110 languages.
MAX_CHARS_PER_LANG = 250_000


def build(x: str, out: str, max_chars: int = MAX_CHARS_PER_LANG) -> dict:
    """Write out/samples.jsonl: per language, distinct strings in msgid-hash order up to `max_chars` (the
    same source strings are chosen in every language). Returns {lang: samples written}."""
    os.makedirs(out, exist_ok=True)
    by_lang: dict = {}
    for s in catalogue_samples(x):
        by_lang.setdefault(s["lang"], {}).setdefault(s["text"], s)
    counts: dict = {}
    with open(f"{out}/samples.jsonl.tmp", "w", encoding="utf-8") as f:
        for lang in sorted(by_lang):
            used = 0
            for s in sorted(by_lang[lang].values(), key=lambda s: (s["group"], s["text"])):
                if used >= max_chars:
                    break
                used += len(s["text"])
                counts[lang] = counts.get(lang, 0) + 1
                f.write(json.dumps(s, ensure_ascii=False) + "\n")
    os.replace(f"{out}/samples.jsonl.tmp", f"{out}/samples.jsonl")
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.corpus.langid_sources", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="downloads go to ROOT/dl/langid, unpacked to ROOT/x/langid")
    ap.add_argument("--skip-fetch", action="store_true", help="reuse ROOT/dl/langid and ROOT/x/langid as they are")
    a = ap.parse_args(argv)
    bad = [p for p in PACKAGES if RESERVED.match(p)]
    if bad:
        raise ValueError(f"reserved evaluation packages must not be used for training: {bad}")
    t0 = time.time()
    dl, x, out = f"{a.root}/dl/langid", f"{a.root}/x/langid", f"{a.root}/out/langid"
    if not a.skip_fetch:
        fetch(PACKAGES, [], [], dl, x)
    counts = build(x, out)
    with open(f"{out}/VERSIONS", "w") as vf:
        for f in sorted(os.listdir(dl)):
            vf.write(f + "\n")
    print(f"langid: {sum(counts.values())} strings in {len(counts)} languages -> {out}/samples.jsonl "
          f"({time.time() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
