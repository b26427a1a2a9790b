"""Text analysis shared by every retriever and the answer composer: words, stems and typo repair.

Indexing, querying and sentence scoring must tokenise identically or a query word silently stops
matching the passage it came from, so there is exactly one `Analyzer` (`ANALYZER`) for all three.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable

import bm25s.stopwords
import Stemmer

# Words that carry no topic: removed everywhere (articles, prepositions, be/have, chat filler).
STOP_WORDS: frozenset[str] = frozenset(
    """
    a about above after against also am an and are as at be because been before being below
    between both but by during either else ever for from further had has have having here hers
    herself himself if in into is it its itself just let lets like nor of once onto or ours
    ourselves over per quite rather really so still such than that the their theirs them
    themselves then there these this those though thus to too until upon very via was were
    whether while with within without yet yourself yourselves hi hello hey thanks thank thx
    please plz pls ok okay im ive id youre
    """.split()
)
# Question words, pronouns, modals, particles: kept at a low query weight, as they tell "how long"
# from "how many" and "turn on" from "turn off", but must never outrank a topic word. Contractions
# typed without an apostrophe ("whats") are here too, or they would count as unknown rare words.
SOFT_STOP_WORDS: frozenset[str] = frozenset(
    """
    what when where which who whom whose why how i me my mine myself we us our you your he she
    him her his they can could should would will shall may might must do does did done doing
    dont doesnt didnt isnt arent wasnt cant wont not no get gets got getting any all some each
    every more most other others only own same up down on out off under again now much whats
    wheres hows whos whens thats
    """.split()
)
SOFT_WEIGHT = 0.5
EXACT = "="  # prefix of exact-form terms
EXACT_WEIGHT = 1.0  # an exact-form match counts as much again as its stem
CORE_TERMS = 6  # query terms beyond the heaviest six no longer dilute scaled scores

_WORD = re.compile(r"[^\W_]+(?:[-_./][^\W_]+)*")
_PARTS = re.compile(r"[^\W\d_]+|\d+")
_APOSTROPHES = str.maketrans("", "", "'’‘`")
_ELISIONS = str.maketrans("'’‘`", "    ")
_NO_STOP_WORDS: frozenset[str] = frozenset()
_STEM_CACHE_LIMIT = 500_000
# Small, domain-neutral groups of words customers use interchangeably when asking the same thing
# ("what's the fee" / "how much does it cost"). A query word also looks for its group mates, at a
# low weight, so a text using the asker's own word still ranks first.
RELATED_WORDS: tuple[tuple[str, ...], ...] = (
    ("cost", "price", "fee", "charge"),
    ("expire", "expiry", "valid", "validity"),
)
# The same groups in the other languages the engine answers in (ISO 639-1), for the composer:
# a French question about "prix" credits a sentence giving the "tarif". Retrieval expands
# English only (`expansion_stems`; why, in bench/README.md "Session 8: languages").
RELATED_BY_LANGUAGE: dict[str, tuple[tuple[str, ...], ...]] = {
    "en": RELATED_WORDS,
    "fr": (("coût", "prix", "frais", "tarif"), ("expirer", "expiration", "valable", "validité")),
    "de": (("kosten", "preis", "gebühr", "tarif"), ("ablaufen", "ablauf", "gültig", "gültigkeit")),
    "es": (
        ("coste", "costo", "precio", "tarifa", "cargo"),
        ("caducar", "caducidad", "vencer", "válido", "validez"),
    ),
    "it": (
        ("costo", "prezzo", "tariffa", "commissione"),
        ("scadere", "scadenza", "valido", "validità"),
    ),
    "nl": (("kosten", "prijs", "tarief"), ("verlopen", "vervaldatum", "geldig", "geldigheid")),
    "pt": (("custo", "preço", "taxa", "tarifa"), ("expirar", "validade", "válido", "vencimento")),
    "sv": (("kostnad", "pris", "avgift"), ("utgå", "förfalla", "giltig", "giltighet")),
    "da": (("omkostning", "pris", "gebyr"), ("udløbe", "udløb", "gyldig", "gyldighed")),
    "no": (("kostnad", "pris", "gebyr", "avgift"), ("utløpe", "utløp", "gyldig", "gyldighet")),
    "fi": (("hinta", "maksu", "kulu", "kustannus"), ("vanhentua", "voimassa", "voimassaolo")),
    "pl": (("koszt", "cena", "opłata"), ("wygasnąć", "wygasa", "ważny", "ważność")),
}
# Question forms whose answers are phrased with other words: "how much" is answered with a price.
# ("how long" -> time, days was tried and dropped: it cost covidfaq R@5 0.914 -> 0.903.)
FORM_RELATED: dict[tuple[str, str], tuple[str, ...]] = {
    ("how", "much"): ("cost", "price", "fee"),
}
RELATED_WEIGHT = 0.3
_MIN_REPAIR_LENGTH = 6  # short real words ("smell", "order") sit one edit from other real words
_MIN_TYPO_TARGET = 5


class Analyzer:
    """One tokenisation shared by indexing, querying and sentence scoring so they always agree.

    `stop_words`/`soft_stop_words` default to the English lists; `split_elisions` makes an
    apostrophe separate words instead of joining them: in French or Italian "l'annulation" is
    the article plus "annulation", while in English "don't" is one word, "dont".
    `clitic_hyphens`: a hyphenated word ending in a stop word ("est-ce", "peut-on") gets no
    joined form; in English "check-in" also gives "checkin", as customers write both."""

    def __init__(
        self,
        language: str = "english",
        *,
        stop_words: frozenset[str] = STOP_WORDS,
        soft_stop_words: frozenset[str] = SOFT_STOP_WORDS,
        split_elisions: bool = False,
        clitic_hyphens: bool = False,
    ) -> None:
        self.language = language
        self.clitic_hyphens = clitic_hyphens
        self.stop_words, self.soft_stop_words = stop_words, soft_stop_words
        self._apostrophes = _ELISIONS if split_elisions else _APOSTROPHES
        self._local = threading.local()
        self._cache: dict[str, str] = {}

    def words(self, text: str, *, keep_stop_words: bool = False) -> list[str]:
        """Lower-cased words; a compound ("wi-fi", "mp3") yields its parts and the joined form."""
        low = text.lower().translate(self._apostrophes)
        stop = _NO_STOP_WORDS if keep_stop_words else self.stop_words
        out = [w for w in _PARTS.findall(low) if len(w) > 1 and w not in stop]
        for token in _WORD.findall(low):
            if not (token.isalpha() or token.isdigit()):
                parts = _PARTS.findall(token)  # ids like "x7k2p9" stay whole; long a-b-c-d-e don't
                if token.isalnum() or len(parts) <= 4:
                    if self.clitic_hyphens and parts[-1] in self.stop_words:
                        continue  # "est-ce": a verb and its pronoun, not a compound
                    out.append("".join(parts))
        return out

    def stem(self, word: str) -> str:
        """Snowball stem, cached (stemming dominates indexing time otherwise)."""
        stem = self._cache.get(word)
        if stem is None:
            stemmer = getattr(self._local, "stemmer", None)
            if stemmer is None:  # PyStemmer objects must not be shared between threads
                stemmer = self._local.stemmer = Stemmer.Stemmer(self.language)
            stem = stemmer.stemWord(word)
            if len(self._cache) > _STEM_CACHE_LIMIT:
                self._cache.clear()
            self._cache[word] = stem
        return stem

    def terms(self, text: str) -> list[str]:
        """Index terms of a text (see `terms_of`)."""
        return self.terms_of(self.words(text))

    def terms_of(self, words: list[str]) -> list[str]:
        """Stems plus exact forms of inflected words: "refunds" finds "refund", exact still wins."""
        cache = self._cache
        stems = [cache.get(w) or self.stem(w) for w in words]
        return stems + [EXACT + w for w, s in zip(words, stems, strict=True) if w != s]

    def content_terms(self, text: str) -> list[str]:
        """Stemmed topic words only (no question words or pronouns), for overlap scoring."""
        return [self.stem(w) for w in self.words(text) if w not in self.soft_stop_words]


ANALYZER = Analyzer()

# Language names by ISO 639-1 code, as both Snowball (PyStemmer) and PostgreSQL's built-in
# text-search configurations spell them; each side serves the subset it has a stemmer for.
LANGUAGE_NAMES: dict[str, str] = {
    "en": "english",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "nl": "dutch",
    "pt": "portuguese",
    "sv": "swedish",
    "da": "danish",
    "no": "norwegian",
    "fi": "finnish",
    "pl": "polish",
    "ru": "russian",
    "hu": "hungarian",
    "ro": "romanian",
    "tr": "turkish",
}

# Question words, modals, pronouns and chat politeness per language (ISO 639-1): the words of a
# question that say what kind of answer is wanted ("combien", "wie lange", "cómo puedo"), not its
# topic. They weigh half in a query (`SOFT_WEIGHT`), never count as an unmatched rare word, are
# left out of the words an answer must hold (`Analyzer.content_terms`) and are never "repaired"
# as typos. Without them a French "combien" weighed like an unknown topic word and sank the
# confidence. No package ships such lists, so these are written here: grammar words only (who,
# what, when, where, why, which, how, how much/many, can, may, must, do/make, there is, please,
# thanks), common unaccented spellings beside accented ones, never a help centre's vocabulary.
# Words that the language's stop list already drops need not be here (they are removed first).
QUESTION_WORDS: dict[str, frozenset[str]] = {
    "en": SOFT_STOP_WORDS,
    "fr": frozenset(
        """
        quoi quel quelle quels quelles lequel laquelle lesquels lesquelles quand comment combien
        pourquoi où peut peux peuvent pouvez pouvons pourrais pourrait pourriez pouvoir puis
        dois doit doivent devez devons devrais devrait faut fait faire fais faites voudrais
        veux voulez aimerais svp stp bonjour bonsoir salut merci tout tous toute toutes plus
        moins autre autres aucun aucune chaque quelque quelques beaucoup peu déjà deja encore
        """.split()
    ),
    "de": frozenset(
        """
        wer wen wem wessen wann wie wo woher wohin warum weshalb wieso weswegen welche welcher
        welches welchen welchem wieviel wieviele viel viele kann kannst können könnte könnten
        könnt darf dürfen muss musst müssen soll sollte sollten sollen mache machen macht tun
        gibt geht bitte hallo danke moin servus kein keine keinen alle jede jeden mehr schon
        """.split()
    ),
    "es": frozenset(
        """
        qué quién quiénes quien quienes cuál cuáles cual cuales cuándo cuando cómo cuánto cuánta
        cuántos cuántas cuanto cuanta cuantos cuantas porqué dónde donde adónde puedo puede
        pueden puedes podemos podría podrían podria debo debe deben debería hay hago hacer hace
        hacen tengo tiene tienen hola gracias favor todo todos toda todas cada ya
        """.split()
    ),
    "it": frozenset(
        """
        chi cosa quale quali qual quando come quanto quanta quanti quante perché perche dove
        posso può puo puoi possono possiamo potrei potete devo deve devono dobbiamo faccio fare
        fa fanno ciao salve grazie favore prego tutto tutti tutte ogni già gia
        """.split()
    ),
    "nl": frozenset(
        """
        wie wat wanneer hoe hoeveel hoelang waarom waar waarheen welke welk kan kun kunt kunnen
        mag mogen moet moeten zou zouden wil wilt willen doe doet doen hallo hoi bedankt dank
        alstublieft alsjeblieft graag alle elke ieder
        """.split()
    ),
    "pt": frozenset(
        """
        quem quê qual quais quando como quanto quanta quantos quantas porquê onde aonde posso
        pode podem podemos poderia devo deve devem faço fazer faz fazem há tenho tem olá ola
        obrigado obrigada favor todo todos toda todas cada já ja
        """.split()
    ),
    "sv": frozenset(
        """
        vem vad när hur mycket många varför var vilken vilket vilka kan kunna får måste ska
        skulle bör gör göra hej tack alla varje
        """.split()
    ),
    "da": frozenset(
        """
        hvem hvad hvornår hvordan hvor hvorfor hvilken hvilket hvilke meget mange kan kunne må
        skal skulle bør gør gøre hej tak alle hver
        """.split()
    ),
    "no": frozenset(
        """
        hvem hva når hvordan hvor hvorfor hvilken hvilket hvilke mye mange kan kunne må skal
        skulle bør gjør gjøre hei takk alle hver
        """.split()
    ),
    "fi": frozenset(
        """
        kuka ketkä mikä mitkä mitä milloin miten kuinka paljonko montako kauanko miksi missä
        mistä mihin voinko voiko voitteko voin voi pitääkö täytyykö onko minä mä minun sinä te
        hei moi kiitos
        """.split()
    ),
    "pl": frozenset(
        """
        kto co kiedy jak ile dlaczego czemu gdzie dokąd skąd który która które którego czy
        mogę może można musze muszę trzeba należy cześć dziękuję dzięki proszę
        """.split()
    ),
}

# Snowball stemmers (PyStemmer) by ISO 639-1 code, for the languages `worker.agent.language`
# detects. A chunk is indexed, and a question in that language is searched, with its own
# language's stemmer; English, and any language without an entry, use `ANALYZER`.
SNOWBALL: dict[str, str] = {
    code: LANGUAGE_NAMES[code] for code in "en de fr es it nl pt sv da no fi pl".split()
}
# Stop-word lists by Snowball language name: the Snowball project's lists as bm25s ships them
# (no download). A language without one here keeps the English lists, as before.
_PACKAGE_STOP_WORDS: dict[str, str] = {
    "german": "STOPWORDS_GERMAN",
    "french": "STOPWORDS_FRENCH",
    "spanish": "STOPWORDS_SPANISH",
    "italian": "STOPWORDS_ITALIAN",
    "dutch": "STOPWORDS_DUTCH",
    "portuguese": "STOPWORDS_PORTUGUESE",
    "swedish": "STOPWORDS_SWEDISH",
    "danish": "STOPWORDS_DANISH",
    "norwegian": "STOPWORDS_NORWEGIAN",
}
# Languages whose articles and pronouns elide onto the next word with an apostrophe.
_ELIDING = frozenset({"french", "italian"})
# Languages where a hyphen also ties a verb to a pronoun after it ("est-ce", "peut-on",
# "a-t-il", "pode-se"): such a pair is no compound written closed elsewhere ("wi-fi" / "wifi",
# "e-mail" / "email" are), so its joined form ("estce") is no word anyone types, and as a
# query word it weighed like an unknown rare word (see `Analyzer`).
_CLITIC_HYPHENS = frozenset({"french", "portuguese"})
_ANALYZERS: dict[str, Analyzer] = {ANALYZER.language: ANALYZER}
_ANALYZERS_LOCK = threading.Lock()


def stop_words_for(name: str) -> frozenset[str]:
    """The stop words of a Snowball language (`SNOWBALL`'s values), as `Analyzer.words`
    writes words (lower case, apostrophes dropped); the English list where none ships."""
    attr = _PACKAGE_STOP_WORDS.get(name)
    if attr is None:
        return STOP_WORDS
    return frozenset(w.lower().translate(_APOSTROPHES) for w in getattr(bm25s.stopwords, attr))


def soft_stop_words_for(name: str) -> frozenset[str]:
    """Words kept at half weight for a Snowball language: its `QUESTION_WORDS`; a language
    that keeps the English stop list (no package ships its own) keeps the English soft list
    beside its own question words, as it had before."""
    code = next(c for c, n in SNOWBALL.items() if n == name)
    own = QUESTION_WORDS.get(code, frozenset())
    if name == ANALYZER.language or name not in _PACKAGE_STOP_WORDS:
        return own | SOFT_STOP_WORDS
    return own


def analyzer_for(language: str | None) -> Analyzer:
    """The analyzer for `language` (an ISO 639-1 code): its Snowball stemmer and its stop
    words; `ANALYZER` for English, for None and for a language without a stemmer here.

    A chunk is indexed and a question in its language is searched with the same analyzer, so
    their words line up; words and compounds are split the same way in every language (an
    apostrophe separates words in French and Italian, see `Analyzer`)."""
    name = SNOWBALL.get(language or "", ANALYZER.language)
    found = _ANALYZERS.get(name)
    if found is None:
        with _ANALYZERS_LOCK:
            found = _ANALYZERS.get(name)
            if found is None:
                found = _ANALYZERS[name] = Analyzer(
                    name,
                    stop_words=stop_words_for(name),
                    soft_stop_words=soft_stop_words_for(name),
                    split_elisions=name in _ELIDING,
                    clitic_hyphens=name in _CLITIC_HYPHENS,
                )
    return found


_RELATED: dict[str, frozenset[str]] = {
    ANALYZER.stem(word): frozenset(ANALYZER.stem(w) for w in group if w != word)
    for group in RELATED_WORDS
    for word in group
}


def related_stems(stem: str, analyzer: Analyzer | None = None) -> frozenset[str]:
    """Stems of the words in the same `RELATED_WORDS` group as `stem` (empty if none);
    `analyzer`: the language's (its `RELATED_BY_LANGUAGE` groups, stemmed with it)."""
    if analyzer is None or analyzer is ANALYZER:
        return _RELATED.get(stem, frozenset())
    return _related_in(analyzer).get(stem, frozenset())


_RELATED_IN: dict[str, dict[str, frozenset[str]]] = {}


def _related_in(analyzer: Analyzer) -> dict[str, frozenset[str]]:
    found = _RELATED_IN.get(analyzer.language)
    if found is None:
        code = next((c for c, n in SNOWBALL.items() if n == analyzer.language), "")
        groups = RELATED_BY_LANGUAGE.get(code, ())
        found = _RELATED_IN[analyzer.language] = {
            analyzer.stem(word): frozenset(analyzer.stem(w) for w in group if w != word)
            for group in groups
            for word in group
        }
    return found


def iso_code(analyzer: Analyzer) -> str:
    """The ISO 639-1 code of an analyzer's language ("en" for English)."""
    return next((c for c, n in SNOWBALL.items() if n == analyzer.language), "en")


def expansion_stems(words: list[str]) -> set[str]:
    """Related stems for a query's words (see `RELATED_WORDS`, `FORM_RELATED`), for retrieval."""
    out = form_related_stems(words)
    for word in words:
        if word not in SOFT_STOP_WORDS and word not in STOP_WORDS:
            out.update(related_stems(ANALYZER.stem(word)))
    return out


def form_related_stems(words: list[str]) -> set[str]:
    """Stems that answer the question forms in `words` ("how much" -> cost, price, fee)."""
    out: set[str] = set()
    for pair in zip(words, words[1:], strict=False):
        out.update(ANALYZER.stem(w) for w in FORM_RELATED.get(pair, ()))
    return out


def is_noise(word: str) -> bool:
    """Numbers, codes and initials: when unknown they only weigh like a common word."""
    return len(word) <= 2 or not word.isalpha()


def capped_mass(masses: list[float]) -> float:
    """Total of the heaviest few terms: a long message is covered once its core words are."""
    return float(sum(sorted(masses, reverse=True)[:CORE_TERMS]))


def _deletes(word: str) -> list[str]:
    """All strings one deletion away (the symmetric-delete trick for typo lookup)."""
    return [word[:i] + word[i + 1 :] for i in range(len(word))]


def _one_edit(a: str, b: str) -> bool:
    """True when a and b differ by one insertion, deletion, substitution or adjacent swap."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        swapped = a[i + 1 : i + 2] + a[i : i + 1] + a[i + 2 :]
        return a[i + 1 :] == b[i + 1 :] or swapped == b[i:]
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return longer[i + 1 :] == shorter[i:]


class Speller:
    """Repairs query words an index does not hold: split compounds and one-edit typos.

    `surface` is every word the index saw; `known(stem)` says whether a stem is indexed and
    `rarity(stem)` ranks candidates (lower = more common, so the likelier intended word wins).
    """

    def __init__(
        self,
        surface: Iterable[str],
        known: Callable[[str], bool],
        rarity: Callable[[str], float],
    ) -> None:
        self.surface = set(surface)
        self._known, self._rarity = known, rarity
        self._typo_index: dict[str, list[str]] | None = None

    @staticmethod
    def repairable(word: str) -> bool:
        """Only long alphabetic words: short ones are too close to other real words to guess."""
        return len(word) >= _MIN_REPAIR_LENGTH and word.isalpha()

    def split(self, word: str, analyzer: Analyzer | None = None) -> list[str]:
        """Halves of a run-together word ("healthcare": health, care) when both are indexed
        (or the tail is a stop word of the query's language, `analyzer`'s)."""
        stop = (analyzer or ANALYZER).stop_words
        for i in range(3, len(word) - 1):
            head, tail = word[:i], word[i:]
            if head in self.surface and (tail in self.surface or tail in stop):
                return [head, tail]
        return []

    def correct(self, word: str, analyzer: Analyzer | None = None) -> str | None:
        """Most common indexed word within one edit of `word` (symmetric-delete lookup); never
        a question word of the query's language (`analyzer`'s): a topic word is not meant."""
        analyzer = analyzer or ANALYZER
        if self._typo_index is None:
            index: dict[str, list[str]] = {}
            for known in self.surface:
                if len(known) >= _MIN_TYPO_TARGET and known.isalpha():
                    for key in [known, *_deletes(known)]:
                        index.setdefault(key, []).append(known)
            self._typo_index = index
        soft = analyzer.soft_stop_words
        found = {c for key in [word, *_deletes(word)] for c in self._typo_index.get(key, ())}
        found = {
            c
            for c in found
            if c[0] == word[0]
            and c not in soft
            and _one_edit(word, c)
            and (self._known(analyzer.stem(c)) or self._known(ANALYZER.stem(c)))
        }
        if not found:
            return None
        return min(found, key=lambda c: (self._rarity(ANALYZER.stem(c)), c))


_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_QUERY_WORD = re.compile(r"[^\W\d_]+")
MIN_QUERY_REPAIR = 4  # "wher", "pakage": short words too, but only when they are no word at all


def _edits(word: str) -> set[str]:
    """Every string one deletion, adjacent swap, substitution or insertion away."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    out = {a + b[1:] for a, b in splits if b}
    out |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    out |= {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    out |= {a + c + b for a, b in splits for c in _LETTERS}
    out.discard(word)
    return out


class QueryRepair:
    """Fixes misspelt query words before retrieval, using the KB's own words first.

    A word is repaired only when it is neither in the knowledge base nor in the general
    vocabulary (`known_words`, e.g. the embedding model's whole-word tokens): so "weak" stays
    "weak" (a real word; only context could tell it meant "week"), while "pakage", "trakcing" and
    "wher" become "package", "tracking" and "where". Candidates are one edit away and keep the
    first letter; a KB word wins over a general one, the more frequent over the rarer.
    """

    def __init__(
        self,
        kb_counts: dict[str, int],
        known_words: dict[str, int] | None,
        synonym: Callable[[str], str | None] | None = None,
        languages: Iterable[str] = (),
        by_language: dict[str, dict[str, int]] | None = None,
        known_language: str = "en",
    ) -> None:
        """`synonym(word)`: the KB word nearest in meaning to a real word the KB lacks
        ("headset" -> "headphones"), or None; it maps the customer's word onto the KB's.
        `languages`: the KB's languages besides English, whose stemmers also tell a word
        the KB has in another form ("remboursée" where it says "remboursement").
        `by_language`: the KB's words per language of the articles holding them (ISO 639-1;
        None: every word counts for every language); `known_language`: the language of
        `known_words` (the embedding model's word list is mostly English). A question is
        repaired only toward words of its own language: with one general English list,
        French "coûte" became "conte" and "acceptez" "accepted"."""
        self.kb = kb_counts
        self.by_language = by_language
        self.known_language = known_language
        self.known = known_words or {}
        self.synonym = synonym
        # a word whose stem the KB has is no typo ("originate" where the KB says "originated"):
        # retrieval matches it by its stem already, and rewriting it loses its exact form
        self.kb_stems = {ANALYZER.stem(w) for w in kb_counts}
        others = {analyzer_for(code) for code in languages} - {ANALYZER}
        self.other_stems = [(a, {a.stem(w) for w in kb_counts}) for a in others]

    def repair_word(self, word: str, language: str | None = None) -> str:
        """The word's correction, or the word itself. `language`: the question's (ISO 639-1;
        None is English), whose stop and question words are never typos."""
        low = word.lower()
        analyzer = analyzer_for(language)
        if len(low) < MIN_QUERY_REPAIR or low in self.kb or low in analyzer.stop_words:
            return word
        if low in analyzer.soft_stop_words:
            return word
        code = language or "en"
        own = self.kb if self.by_language is None else self.by_language.get(code)
        if own is None:
            return word  # no article in the question's language: no word of its to repair toward
        known = self.known if code == self.known_language else {}
        if low in known:
            return (self.synonym(low) if self.synonym else None) or word
        if ANALYZER.stem(low) in self.kb_stems:
            return word
        if any(a.stem(low) in stems for a, stems in self.other_stems):
            return word
        if not known and len(low) < _MIN_REPAIR_LENGTH:
            return word
        near = [c for c in _edits(low) if c[0] == low[0]]
        in_kb = [c for c in near if c in own]
        if in_kb:
            return max(in_kb, key=lambda c: (own[c], c))
        general = [c for c in near if c in known and len(c) >= MIN_QUERY_REPAIR]
        if general:
            fixed = min(general, key=lambda c: (known[c], c))  # lower rank = more common
            return (self.synonym(fixed) if self.synonym else None) or fixed
        return word

    def repair(self, text: str, language: str | None = None) -> str:
        """`text` with each unknown word replaced by its correction (punctuation kept);
        `language` as in `repair_word`."""
        return _QUERY_WORD.sub(lambda m: self.repair_word(m.group(0), language), text)
