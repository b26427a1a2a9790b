"""What the offline engine says in its own words, per language: small talk and fixed replies.

Everything else the engine says is quoted from the help centre; these few sentences (the
abstention and its offer of a person, the "unsure" tail, the note on the KB's language, the
replies to a greeting or a thank-you) are the engine's own, so a customer who writes in French
should read them in French. A language without an entry here gets the English sentences.

Greetings and thanks are also recognised here per language: a message made only of them is
small talk, and a question that opens with "Bonjour," or closes with "merci" is searched
without them (they say nothing about the topic; in English the stop list already drops "hi",
"hello" and "thanks"). These are grammar and politeness formulas, never a help centre's words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from worker.agent.language import LANGUAGES


@dataclass(frozen=True)
class Phrases:
    """The engine's fixed sentences in one language."""

    abstain: str
    unsure: str
    file_note: str
    language_note: str  # "{kb}": the name of the KB's language, in this language
    greeting: str
    thanks: str
    bye: str
    ack: str
    names: dict[str, str]  # language names, as this language writes them


PHRASES: dict[str, Phrases] = {
    "en": Phrases(
        abstain=(
            "I'm sorry, that's not in our documents, and I'd rather not guess. Would you like "
            "me to connect you with a member of our support team?"
        ),
        unsure="If that doesn't answer your question, I can connect you with a person.",
        file_note="From the file you attached:",
        language_note=(
            "Our help articles are only available in {kb}, so answers come from the {kb} documents."
        ),
        greeting="Hi! How can I help you today?",
        thanks="You're welcome! Is there anything else I can help you with?",
        bye="Thanks for getting in touch. Have a great day!",
        ack="Great! Is there anything else I can help you with?",
        names=LANGUAGES,  # the detector's own table names them in English
    ),
    "fr": Phrases(
        abstain=(
            "Désolé, ce n'est pas dans nos documents, et je préfère ne pas deviner. Voulez-vous "
            "que je vous mette en relation avec un membre de notre équipe d'assistance ?"
        ),
        unsure=(
            "Si cela ne répond pas à votre question, je peux vous mettre en relation avec une "
            "personne."
        ),
        file_note="D'après le fichier que vous avez joint :",
        language_note=(
            "Nos articles d'aide n'existent qu'en {kb} : les réponses viennent donc des "
            "documents en {kb}."
        ),
        greeting="Bonjour ! Comment puis-je vous aider ?",
        thanks="Avec plaisir ! Puis-je vous aider pour autre chose ?",
        bye="Merci de nous avoir contactés. Bonne journée !",
        ack="Très bien ! Puis-je vous aider pour autre chose ?",
        names={
            "en": "anglais",
            "fr": "français",
            "de": "allemand",
            "es": "espagnol",
            "it": "italien",
            "nl": "néerlandais",
            "pt": "portugais",
        },
    ),
    "de": Phrases(
        abstain=(
            "Das steht leider nicht in unseren Dokumenten, und ich möchte nicht raten. Soll ich "
            "Sie mit jemandem aus unserem Support-Team verbinden?"
        ),
        unsure="Falls das Ihre Frage nicht beantwortet, kann ich Sie mit einer Person verbinden.",
        file_note="Aus der Datei, die Sie angehängt haben:",
        language_note=(
            "Unsere Hilfeartikel gibt es nur auf {kb}, daher stammen die Antworten aus den "
            "Dokumenten auf {kb}."
        ),
        greeting="Hallo! Wie kann ich Ihnen helfen?",
        thanks="Gern geschehen! Kann ich Ihnen sonst noch helfen?",
        bye="Danke für Ihre Nachricht. Einen schönen Tag noch!",
        ack="Gut! Kann ich Ihnen sonst noch helfen?",
        names={
            "en": "Englisch",
            "fr": "Französisch",
            "de": "Deutsch",
            "es": "Spanisch",
            "it": "Italienisch",
            "nl": "Niederländisch",
            "pt": "Portugiesisch",
        },
    ),
    "es": Phrases(
        abstain=(
            "Lo siento, eso no está en nuestros documentos y prefiero no adivinar. ¿Quiere que "
            "le ponga en contacto con una persona de nuestro equipo de soporte?"
        ),
        unsure="Si esto no responde a su pregunta, puedo ponerle en contacto con una persona.",
        file_note="Según el archivo que adjuntó:",
        language_note=(
            "Nuestros artículos de ayuda solo están disponibles en {kb}, así que las respuestas "
            "vienen de los documentos en {kb}."
        ),
        greeting="¡Hola! ¿En qué puedo ayudarle?",
        thanks="¡De nada! ¿Puedo ayudarle en algo más?",
        bye="Gracias por escribirnos. ¡Que tenga un buen día!",
        ack="¡Perfecto! ¿Puedo ayudarle en algo más?",
        names={
            "en": "inglés",
            "fr": "francés",
            "de": "alemán",
            "es": "español",
            "it": "italiano",
            "nl": "neerlandés",
            "pt": "portugués",
        },
    ),
    "it": Phrases(
        abstain=(
            "Mi dispiace, questo non è nei nostri documenti e preferisco non tirare a "
            "indovinare. Vuole che la metta in contatto con una persona del nostro team di "
            "assistenza?"
        ),
        unsure=(
            "Se questo non risponde alla sua domanda, posso metterla in contatto con una persona."
        ),
        file_note="Dal file che ha allegato:",
        language_note=(
            "I nostri articoli di assistenza sono disponibili solo in {kb}, quindi le risposte "
            "provengono dai documenti in {kb}."
        ),
        greeting="Buongiorno! Come posso aiutarla?",
        thanks="Prego! Posso aiutarla in qualcos'altro?",
        bye="Grazie per averci contattato. Buona giornata!",
        ack="Bene! Posso aiutarla in qualcos'altro?",
        names={
            "en": "inglese",
            "fr": "francese",
            "de": "tedesco",
            "es": "spagnolo",
            "it": "italiano",
            "nl": "olandese",
            "pt": "portoghese",
        },
    ),
    "nl": Phrases(
        abstain=(
            "Sorry, dat staat niet in onze documenten, en ik gok liever niet. Wilt u dat ik u "
            "doorverbind met een medewerker van ons supportteam?"
        ),
        unsure="Als dit uw vraag niet beantwoordt, kan ik u doorverbinden met een medewerker.",
        file_note="Uit het bestand dat u hebt bijgevoegd:",
        language_note=(
            "Onze helpartikelen zijn alleen in het {kb} beschikbaar, dus de antwoorden komen "
            "uit de artikelen in het {kb}."
        ),
        greeting="Hallo! Waarmee kan ik u helpen?",
        thanks="Graag gedaan! Kan ik u nog ergens anders mee helpen?",
        bye="Bedankt voor uw bericht. Nog een fijne dag!",
        ack="Prima! Kan ik u nog ergens anders mee helpen?",
        names={
            "en": "Engels",
            "fr": "Frans",
            "de": "Duits",
            "es": "Spaans",
            "it": "Italiaans",
            "nl": "Nederlands",
            "pt": "Portugees",
        },
    ),
    "pt": Phrases(
        abstain=(
            "Desculpe, isso não está nos nossos documentos e prefiro não adivinhar. Quer que o "
            "ponha em contacto com alguém da nossa equipa de apoio?"
        ),
        unsure="Se isto não responder à sua pergunta, posso pô-lo em contacto com uma pessoa.",
        file_note="Do ficheiro que anexou:",
        language_note=(
            "Os nossos artigos de ajuda só estão disponíveis em {kb}, por isso as respostas vêm "
            "dos documentos em {kb}."
        ),
        greeting="Olá! Como posso ajudar?",
        thanks="De nada! Posso ajudar em mais alguma coisa?",
        bye="Obrigado pelo contacto. Tenha um bom dia!",
        ack="Ótimo! Posso ajudar em mais alguma coisa?",
        names={
            "en": "inglês",
            "fr": "francês",
            "de": "alemão",
            "es": "espanhol",
            "it": "italiano",
            "nl": "neerlandês",
            "pt": "português",
        },
    ),
}


def phrases_for(language: str | None) -> Phrases:
    """The fixed sentences in `language` (ISO 639-1), English when there are none."""
    return PHRASES.get(language or "en", PHRASES["en"])


def language_note(speak: str | None, kb: str) -> str:
    """ "Our articles are only in {kb}" in the customer's language when both that language's
    sentences and its name for the KB's language are known, else in English."""
    phrases = phrases_for(speak)
    if kb not in phrases.names:
        phrases = PHRASES["en"]
    return phrases.language_note.format(kb=phrases.names.get(kb, kb))


@dataclass(frozen=True)
class Courtesy:
    """A language's greetings, thanks and goodbyes (regex alternations over lower-case text
    with apostrophes removed) and the filler words that may surround them ("merci beaucoup",
    "ok super")."""

    greeting: str
    thanks: str
    bye: str
    filler: frozenset[str]


# English small talk is recognised by `offline.classify`'s own word sets (unchanged); these are
# the other languages the engine stems and answers in.
COURTESY: dict[str, Courtesy] = {
    "fr": Courtesy(
        greeting=r"bonjour|bonsoir|salut|coucou|allo|allô",
        thanks=r"merci|je vous remercie|remerciements",
        bye=r"au revoir|bonne (?:journée|journee|soirée|soiree)|à bientôt|a bientot|adieu",
        filler=frozenset(
            "beaucoup bien très tres ok okay daccord parfait super génial genial top cool "
            "madame monsieur à a vous tous encore davance cest tout ça ca".split()
        ),
    ),
    "de": Courtesy(
        greeting=r"hallo|guten (?:tag|morgen|abend)|moin|servus|grüß gott|gruss gott|hi",
        thanks=r"danke(?:schön| schön| sehr)?|vielen dank|besten dank|herzlichen dank",
        bye=r"tschüss|tschüs|auf wiedersehen|bis bald|schönen tag",
        filler=frozenset("ok okay super perfekt toll gut alles klar sehr noch ihnen dir".split()),
    ),
    "es": Courtesy(
        greeting=r"hola|buen(?:os|as) (?:días|dias|tardes|noches)",
        thanks=r"(?:muchas )?gracias",
        bye=r"adiós|adios|chao|hasta luego|hasta pronto",
        filler=frozenset("ok vale perfecto genial bien muy de nuevo todo".split()),
    ),
    "it": Courtesy(
        greeting=r"ciao|salve|buongiorno|buonasera",
        thanks=r"grazie(?: mille| tante)?|molte grazie",
        bye=r"arrivederci|a presto|buona giornata",
        filler=frozenset("ok va bene perfetto ottimo benissimo tutto".split()),
    ),
    "nl": Courtesy(
        greeting=r"hallo|hoi|goedemorgen|goedemiddag|goedenavond|goededag",
        thanks=r"(?:hartelijk )?bedankt|dank (?:je|u)(?: wel)?|dankjewel|dankuwel",
        bye=r"doei|tot ziens|fijne dag",
        filler=frozenset("ok oké prima top super perfect goed heel erg".split()),
    ),
    "pt": Courtesy(
        greeting=r"olá|ola|oi|bom dia|boa (?:tarde|noite)",
        thanks=r"(?:muito )?obrigad[oa]",
        bye=r"tchau|adeus|até logo|ate logo|até breve",
        filler=frozenset("ok ótimo otimo perfeito muito bem tudo".split()),
    ),
}
_KINDS = ("greeting", "thanks", "bye")
_WORD = re.compile(r"[^\W\d_]+")
_APOSTROPHES = str.maketrans("", "", "'’‘`")


def _normal(message: str) -> str:
    return " ".join(message.lower().translate(_APOSTROPHES).split())


def _patterns(code: str) -> dict[str, re.Pattern[str]]:
    c = COURTESY[code]
    return {kind: re.compile(rf"(?<!\w)(?:{getattr(c, kind)})(?!\w)") for kind in _KINDS}


_PATTERNS = {code: _patterns(code) for code in COURTESY}
_LEADING = {
    code: re.compile(rf"^\W*(?:(?:{c.greeting}|{c.thanks})(?!\w)[\s,.!;:]*)+")
    for code, c in COURTESY.items()
}
_TRAILING = {
    code: re.compile(
        rf"[\s,.!;:]+(?:{c.thanks}|{c.bye})(?:\s+(?:beaucoup|d.avance|à vous|a vous))?\W*$"
    )
    for code, c in COURTESY.items()
}


def small_talk(message: str, prefer: str | None = None) -> tuple[str, str] | None:
    """(kind, language) when `message` is nothing but greetings, thanks, goodbyes and filler
    in one of `COURTESY`'s languages, else None. When the words fit several languages ("ok
    merci" fits French only, "hallo" German and Dutch), `prefer` (the KB's language) wins,
    then the table's order."""
    low = _normal(message)
    found: list[tuple[str, str]] = []
    for code, patterns in _PATTERNS.items():
        kinds = [kind for kind in _KINDS if patterns[kind].search(low)]
        if not kinds:
            continue
        rest = low
        for kind in kinds:
            rest = patterns[kind].sub(" ", rest)
        words = _WORD.findall(rest)
        if len(words) <= 8 and set(words) <= COURTESY[code].filler:
            kind = "thanks" if "thanks" in kinds else "bye" if "bye" in kinds else "greeting"
            found.append((kind, code))
    if not found:
        return None
    return next((f for f in found if f[1] == prefer), found[0])


def without_courtesy(question: str, language: str | None) -> str:
    """`question` without an opening greeting ("Bonjour, ...") or a closing thank-you ("...
    merci"): they say nothing about the topic, yet the stemmer kept "bonjour" as a word to
    look for. Unchanged for English (the stop list drops "hi" and "thanks") and for a language
    without an entry, or when nothing would be left."""
    if language not in COURTESY:
        return question
    low = question.lower()
    if len(low) != len(question):
        return question  # offsets into the lower-cased text must hold for the original
    lead = _LEADING[language].match(low)
    start = lead.end() if lead else 0
    tail = _TRAILING[language].search(low, start)
    end = tail.start() if tail else len(question)
    trimmed = question[start:end].strip()
    return trimmed if _WORD.search(trimmed) else question
