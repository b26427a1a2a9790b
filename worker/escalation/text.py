"""Text normalisation for the escalation rules: one spelling per word, typos repaired, clauses.

Chat messages are typed fast: "dont wanna talk 2 a bot", "i need hlp talkint tosomebody". The
rules in `request.py` match lemmas, so everything about spelling lives here: unicode and
apostrophes, contractions and chat shorthand, doubled letters, glued words and, for lexicon
words only, one-edit typos (rapidfuzz's optimal string alignment distance).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from rapidfuzz import process
from rapidfuzz.distance import OSA

from worker.escalation import lexicon as lx

#: Contraction stems whose "'s" means "is" (not a possessive).
_IS_STEMS = frozenset("it that what there he she here who where how".split())

#: Shorthand and apostrophe-less contractions -> their full words.
SHORTHAND: dict[str, str] = {
    **{w: w[:-2] + " not" for w in ("dont", "doesnt", "didnt", "isnt", "arent", "wasnt")},
    **{w: w[:-2] + " not" for w in ("werent", "havent", "hasnt", "couldnt", "wouldnt")},
    **{w: w[:-2] + " not" for w in ("shouldnt", "mustnt", "neednt", "aint")},
    "cant": "can not",
    "cannot": "can not",
    "wont": "will not",
    "im": "i am",
    "ive": "i have",
    "youre": "you are",
    "wanna": "want to",
    "wana": "want to",
    "gonna": "going to",
    "gotta": "got to",
    "hafta": "have to",
    "gimme": "give me",
    "lemme": "let me",
    "u": "you",
    "ya": "you",
    "yu": "you",
    "r": "are",
    "pls": "please",
    "plz": "please",
    "plss": "please",
    "plse": "please",
    "pleas": "please",
    "wth": "with",
    "wit": "with",
    "wiht": "with",
    "w": "with",
    "hv": "have",
    "idk": "i do not know",
    "nvm": "nevermind",
    "ppl": "people",
}

#: Multi-word spellings folded into one token before splitting.
_PHRASES: tuple[tuple[str, str], ...] = (
    (r"\binstead of\b", "insteadof"),
    (r"\brather than\b", "ratherthan"),
    (r"\bhand[\s-]+off\b", "handoff"),
    (r"\bcall-back\b", "callback"),
    (r"\bhuman being(s)?\b", "human"),
    (r"\bw/", "with "),
    (r"\b(some|any|every) (one|body)\b", r"\1\2"),
)

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*|[.!?;:,\n]", re.IGNORECASE)
CLAUSE_BREAKS = frozenset(".!?;:\n")


@dataclass(frozen=True)
class Token:
    """One normalised word: `lemma` is what the rules match, `cap` marks a possible name."""

    word: str
    lemma: str
    cap: bool = False


def clean(text: str) -> str:
    """Fold unicode, apostrophes, accents and a few multi-word spellings to plain ASCII."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[\u2018\u2019\u201b\u02bc\u00b4`]", "'", text)
    text = re.sub(r"(\w)\1{2,}", r"\1\1", text)  # "sooooo" -> "soo"
    for pattern, replacement in _PHRASES:
        text = re.sub(pattern, replacement, text, flags=re.IGNORECASE)
    return text


def _expand(word: str) -> list[str]:
    """A lowercase word with its contraction or shorthand spelled out."""
    if "'" in word:
        stem, _, tail = word.partition("'")
        if tail == "t" and stem.endswith("n"):
            base = {"ca": "can", "wo": "will", "ai": "is", "sha": "shall"}.get(stem[:-1], stem[:-1])
            return [base or stem, "not"]
        full = {"m": "am", "re": "are", "ve": "have", "ll": "will", "d": "would"}.get(tail)
        if full:
            return [stem, full]
        if tail == "s":
            if stem == "let":
                return ["let", "us"]
            return [stem, "is"] if stem in _IS_STEMS else [stem, "'s"]
        return [stem]
    return SHORTHAND.get(word, word).split()


VOCAB: dict[str, str] = {
    **{w: w for w in lx.DESK_NOUNS | lx.DESK_QUALIFIERS | lx.MODIFIERS | lx.BOT_NOUNS},
    **{w: w for w in lx.REQUEST_WORDS},
    **lx.CONTACT_VERBS,
    **lx.PRONOUNS,
    **lx.PERSON_NOUNS,
}

#: Lexicon words a typo may be repaired to: long enough that one edit is still unambiguous.
_FUZZY_TARGETS: list[str] = sorted(
    w
    for w in {**lx.PERSON_NOUNS, **lx.PRONOUNS, **lx.CONTACT_VERBS}
    if len(w) >= 6 or w in {"human", "agent", "speak"}
) + ["customer", "service", "support"]


def _first_letters_ok(word: str, candidate: str) -> bool:
    """Typos rarely touch the first letter, except by swapping the first two ("eprson")."""
    return word[0] == candidate[0] or word[:2] == candidate[1::-1]


@lru_cache(maxsize=4096)
def repair(word: str) -> str | None:
    """The lexicon word `word` is a misspelling of, or None if it is not (close to) one."""
    if word in VOCAB:
        return word
    if len(word) < 5 or word in lx.NOT_TYPOS or not word.isalpha():
        return None
    for i in range(len(word) - 1):  # "talkk", "talkiing"
        if word[i] == word[i + 1] and (shorter := word[:i] + word[i + 1 :]) in VOCAB:
            return shorter
    limit = 2 if len(word) >= 9 else 1
    hit = process.extractOne(word, _FUZZY_TARGETS, scorer=OSA.distance, score_cutoff=limit)
    if hit and _first_letters_ok(word, hit[0]):
        return hit[0]
    return None


def _split_glued(word: str) -> list[str] | None:
    """'tosomebody' -> ['to', 'somebody']: a function word glued to a lexicon word."""
    for prefix in lx.SPLIT_PREFIXES:
        rest = word[len(prefix) :]
        if word.startswith(prefix) and len(rest) >= 4 and (fixed := repair(rest)):
            return [prefix, fixed]
    return None


def _lemma(word: str) -> str:
    """The canonical form the rules match: person nouns and verbs fold their variants."""
    return lx.PERSON_NOUNS.get(word) or lx.PRONOUNS.get(word) or lx.CONTACT_VERBS.get(word) or word


def _words(raw: str) -> list[str]:
    """One raw token as normalised, repaired lowercase words."""
    out: list[str] = []
    for word in _expand(raw.lower()):
        if word in VOCAB or not word.isalpha():
            out.append(word)
        elif fixed := repair(word):
            out.append(fixed)
        else:
            out.extend(_split_glued(word) or [word])
    return out


def tokens(text: str) -> list[Token]:
    """Normalised tokens of a message; punctuation is kept as clause and scope boundaries."""
    return list(_tokens(text))


@lru_cache(maxsize=1024)
def _tokens(text: str) -> tuple[Token, ...]:
    """`tokens`, memoised: the policy reads one message four times before an answer (request,
    frustration, urgency, repeat), each from its tokens, and the spelling repair and lemmas
    behind them were most of that check's CPU. Tokens are frozen, so sharing them is safe."""
    shouting = text.upper() == text
    result: list[Token] = []
    for raw in _TOKEN.findall(clean(text)):
        cap = raw[0].isupper() and not shouting
        for i, word in enumerate(_words(raw)):
            result.append(Token(word, _lemma(word), cap and i == 0))
    return tuple(_fix_id(result))


def _fix_id(toks: list[Token]) -> list[Token]:
    """'id like' / 'id rather' is "I would", not an ID."""
    out: list[Token] = []
    for i, tok in enumerate(toks):
        nxt = toks[i + 1].word if i + 1 < len(toks) else ""
        if tok.word == "id" and nxt in {"like", "rather", "prefer", "love", "want"}:
            out += [Token("i", "i"), Token("would", "would")]
        else:
            out.append(tok)
    return out


def clauses(text: str) -> list[list[Token]]:
    """Sentences of a message (split at . ! ? ; : and 'but'), each a list of tokens."""
    out: list[list[Token]] = [[]]
    for tok in tokens(text):
        if tok.word in CLAUSE_BREAKS or tok.word == "but":
            out.append([])
        else:
            out[-1].append(tok)
    return [c for c in out if c]
