"""Which language a customer writes in, and which languages the knowledge base is written in.

py3langid ships its model in the wheel (no download). Short chat messages are easy to misread
("hola" scores as Zulu), so a message counts as another language only when it has a few words
and the identifier is confident; anything else is treated as the KB's own language.
"""

from __future__ import annotations

import re
import threading
from typing import Any

MIN_WORDS = 3
MIN_PROBABILITY = 0.8
# Languages a European help centre meets; all have a Snowball stemmer (PyStemmer).
LANGUAGES: dict[str, str] = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "nl": "Dutch",
    "pt": "Portuguese",
    "sv": "Swedish",
    "da": "Danish",
    "no": "Norwegian",
    "fi": "Finnish",
    "pl": "Polish",
}
# Written Danish and Norwegian (Bokmål) are so close that the identifier splits a short
# message's probability between the two ("Hvor er min pakke?": Danish 0.59, Norwegian 0.38), so
# half of our Danish and Norwegian test questions fell under `MIN_PROBABILITY` and were read as
# the KB's language. For a customer's message their sum says how sure it is of the pair, and
# the likelier one is taken; each reads the other's fixed sentences without effort.
KIN: dict[str, tuple[str, ...]] = {"da": ("da", "no"), "no": ("da", "no")}
_WORD = re.compile(r"[^\W\d_]+")
_identifier: Any = None
_lock = threading.Lock()


def _get() -> Any:
    global _identifier
    with _lock:
        if _identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            ident.set_languages(list(LANGUAGES))
            _identifier = ident
        return _identifier


def preload() -> None:
    """Load the identifier now (the worker's parent does, before its pool forks)."""
    _get()


def detect(text: str, *, min_words: int = MIN_WORDS, kin: bool = True) -> str | None:
    """The ISO 639-1 code of `text`'s language when it is clear, else None. `kin`: a language
    of a `KIN` pair counts as clear when the pair together is (see `KIN`)."""
    if len(_WORD.findall(text)) < min_words:
        return None
    if not kin:
        code, probability = _get().classify(text[:2000])
        return str(code) if probability >= MIN_PROBABILITY else None
    ranked = dict(_get().rank(text[:2000]))
    code = max(ranked, key=lambda c: ranked[c])
    probability = sum(ranked.get(c, 0.0) for c in KIN.get(code, (code,)))
    return str(code) if probability >= MIN_PROBABILITY else None


def name(code: str) -> str:
    """The language's English name ("German" for "de")."""
    return LANGUAGES.get(code) or code


ARTICLE_CHUNKS = 2  # an article's language is read from its first chunks...
ARTICLE_CHARS = 400  # ...this much of each: enough words to tell, cheap at 100k chunks
ARTICLE_MIN_WORDS = 8


def article_language(chunks: list[str]) -> str | None:
    """The language of an article from its chunks' texts in order, or None when unclear.

    One recipe for ingestion (which stores it with the chunks), index builds and the migration
    that tagged existing chunks, so all three agree on every article (so `KIN` stays out: it
    would retag articles the migration tagged; an article has words enough to tell anyway)."""
    head = " ".join(text[:ARTICLE_CHARS] for text in chunks[:ARTICLE_CHUNKS])
    return detect(head, min_words=ARTICLE_MIN_WORDS, kin=False)
