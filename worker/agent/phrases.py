"""What the offline engine says in its own words, per language: small talk and fixed replies.

Everything else the engine says is quoted from the help centre; these few sentences (the
abstention and its offer of a person, the "unsure" tail, the note on the KB's language, the
replies to a greeting or a thank-you) are the engine's own, so a customer who writes in French
should read them in French. Every language `language.LANGUAGES` detects has one `PHRASES` entry
(its sentences, its names for the other languages, its greetings and thanks), so adding a
language here is one entry; a language without one would get the English sentences.

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
class Courtesy:
    """A language's greetings, thanks and goodbyes (regex alternations over lower-case text
    with apostrophes removed) and the filler words that may surround them ("merci beaucoup",
    "ok super")."""

    greeting: str
    thanks: str
    bye: str
    filler: frozenset[str]


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
    names: dict[str, str]  # language names, as `language_note` writes them in this language
    courtesy: Courtesy | None = None  # None: English, recognised by `offline.classify`


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
            "sv": "suédois",
            "da": "danois",
            "no": "norvégien",
            "fi": "finnois",
            "pl": "polonais",
        },
        courtesy=Courtesy(
            greeting=r"bonjour|bonsoir|salut|coucou|allo|allô",
            thanks=r"merci|je vous remercie|remerciements",
            bye=r"au revoir|bonne (?:journée|journee|soirée|soiree)|à bientôt|a bientot|adieu",
            filler=frozenset(
                "beaucoup bien très tres ok okay daccord parfait super génial genial top cool "
                "madame monsieur à a vous tous encore davance cest tout ça ca".split()
            ),
        ),
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
            "sv": "Schwedisch",
            "da": "Dänisch",
            "no": "Norwegisch",
            "fi": "Finnisch",
            "pl": "Polnisch",
        },
        courtesy=Courtesy(
            greeting=r"hallo|guten (?:tag|morgen|abend)|moin|servus|grüß gott|gruss gott|hi",
            thanks=r"danke(?:schön| schön| sehr)?|vielen dank|besten dank|herzlichen dank",
            bye=r"tschüss|tschüs|auf wiedersehen|bis bald|schönen tag",
            filler=frozenset(
                "ok okay super perfekt toll gut alles klar sehr noch ihnen dir".split()
            ),
        ),
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
            "sv": "sueco",
            "da": "danés",
            "no": "noruego",
            "fi": "finés",
            "pl": "polaco",
        },
        courtesy=Courtesy(
            greeting=r"hola|buen(?:os|as) (?:días|dias|tardes|noches)",
            thanks=r"(?:muchas )?gracias",
            bye=r"adiós|adios|chao|hasta luego|hasta pronto",
            filler=frozenset("ok vale perfecto genial bien muy de nuevo todo".split()),
        ),
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
            "sv": "svedese",
            "da": "danese",
            "no": "norvegese",
            "fi": "finlandese",
            "pl": "polacco",
        },
        courtesy=Courtesy(
            greeting=r"ciao|salve|buongiorno|buonasera",
            thanks=r"grazie(?: mille| tante)?|molte grazie",
            bye=r"arrivederci|a presto|buona giornata",
            filler=frozenset("ok va bene perfetto ottimo benissimo tutto".split()),
        ),
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
            "sv": "Zweeds",
            "da": "Deens",
            "no": "Noors",
            "fi": "Fins",
            "pl": "Pools",
        },
        courtesy=Courtesy(
            greeting=r"hallo|hoi|goedemorgen|goedemiddag|goedenavond|goededag",
            thanks=r"(?:hartelijk )?bedankt|dank (?:je|u)(?: wel)?|dankjewel|dankuwel",
            bye=r"doei|tot ziens|fijne dag",
            filler=frozenset("ok oké prima top super perfect goed heel erg".split()),
        ),
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
            "sv": "sueco",
            "da": "dinamarquês",
            "no": "norueguês",
            "fi": "finlandês",
            "pl": "polaco",
        },
        courtesy=Courtesy(
            greeting=r"olá|ola|oi|bom dia|boa (?:tarde|noite)",
            thanks=r"(?:muito )?obrigad[oa]",
            bye=r"tchau|adeus|até logo|ate logo|até breve",
            filler=frozenset("ok ótimo otimo perfeito muito bem tudo".split()),
        ),
    ),
    "sv": Phrases(
        abstain=(
            "Tyvärr finns det inte i våra dokument, och jag vill inte gissa. Vill du att jag "
            "kopplar dig till någon i vårt supportteam?"
        ),
        unsure="Om det inte besvarar din fråga kan jag koppla dig till en person.",
        file_note="Från filen du bifogade:",
        language_note=(
            "Våra hjälpartiklar finns bara på {kb}, så svaren kommer från dokumenten på {kb}."
        ),
        greeting="Hej! Hur kan jag hjälpa dig?",
        thanks="Varsågod! Finns det något mer jag kan hjälpa dig med?",
        bye="Tack för att du hörde av dig. Ha en fin dag!",
        ack="Bra! Finns det något mer jag kan hjälpa dig med?",
        names={
            "en": "engelska",
            "fr": "franska",
            "de": "tyska",
            "es": "spanska",
            "it": "italienska",
            "nl": "nederländska",
            "pt": "portugisiska",
            "sv": "svenska",
            "da": "danska",
            "no": "norska",
            "fi": "finska",
            "pl": "polska",
        },
        courtesy=Courtesy(
            greeting=r"hej|hejsan|tjena|hallå|god (?:morgon|dag|kväll)",
            thanks=r"tack|tusen tack|stort tack",
            bye=r"hej då|hejdå|ha det bra|ha en (?:bra|fin) dag|vi hörs",
            filler=frozenset("ok okej bra perfekt super toppen så mycket för hjälpen".split()),
        ),
    ),
    "da": Phrases(
        abstain=(
            "Det står desværre ikke i vores dokumenter, og jeg vil helst ikke gætte. Vil du "
            "have, at jeg sætter dig i forbindelse med en fra vores supportteam?"
        ),
        unsure=(
            "Hvis det ikke besvarer dit spørgsmål, kan jeg sætte dig i forbindelse med en person."
        ),
        file_note="Fra den fil, du vedhæftede:",
        language_note=(
            "Vores hjælpeartikler findes kun på {kb}, så svarene kommer fra dokumenterne på {kb}."
        ),
        greeting="Hej! Hvordan kan jeg hjælpe dig?",
        thanks="Selv tak! Er der andet, jeg kan hjælpe dig med?",
        bye="Tak, fordi du kontaktede os. Hav en god dag!",
        ack="Godt! Er der andet, jeg kan hjælpe dig med?",
        names={
            "en": "engelsk",
            "fr": "fransk",
            "de": "tysk",
            "es": "spansk",
            "it": "italiensk",
            "nl": "nederlandsk",
            "pt": "portugisisk",
            "sv": "svensk",
            "da": "dansk",
            "no": "norsk",
            "fi": "finsk",
            "pl": "polsk",
        },
        courtesy=Courtesy(
            greeting=r"hej|hejsa|halløj|goddag|god (?:morgen|aften)",
            thanks=r"tak|mange tak|tusind tak",
            bye=r"farvel|hej hej|vi ses|ha(?:v)? en god dag",
            filler=frozenset("ok okay fint godt perfekt super skal du have for hjælpen".split()),
        ),
    ),
    "no": Phrases(  # Norwegian Bokmål
        abstain=(
            "Det står dessverre ikke i dokumentene våre, og jeg vil helst ikke gjette. Vil du at "
            "jeg setter deg i kontakt med noen fra supportteamet vårt?"
        ),
        unsure=(
            "Hvis det ikke svarer på spørsmålet ditt, kan jeg sette deg i kontakt med en person."
        ),
        file_note="Fra filen du la ved:",
        language_note=(
            "Hjelpeartiklene våre finnes bare på {kb}, så svarene kommer fra dokumentene på {kb}."
        ),
        greeting="Hei! Hva kan jeg hjelpe deg med?",
        thanks="Bare hyggelig! Er det noe mer jeg kan hjelpe deg med?",
        bye="Takk for at du tok kontakt. Ha en fin dag!",
        ack="Flott! Er det noe mer jeg kan hjelpe deg med?",
        names={
            "en": "engelsk",
            "fr": "fransk",
            "de": "tysk",
            "es": "spansk",
            "it": "italiensk",
            "nl": "nederlandsk",
            "pt": "portugisisk",
            "sv": "svensk",
            "da": "dansk",
            "no": "norsk",
            "fi": "finsk",
            "pl": "polsk",
        },
        courtesy=Courtesy(
            greeting=r"hei|heisann|hallo|god (?:morgen|dag|kveld)",
            thanks=r"takk|tusen takk|mange takk",
            bye=r"ha det(?: bra)?|hadet|vi snakkes|ha en (?:fin|god) dag",
            filler=frozenset(
                "ok okei fint bra perfekt supert så mye skal du ha for hjelpen".split()
            ),
        ),
    ),
    # Finnish inflects a language's name: the note uses the "in English" form ("englanniksi").
    "fi": Phrases(
        abstain=(
            "Valitettavasti tätä ei löydy dokumenteistamme, enkä halua arvailla. Haluatko, että "
            "ohjaan sinut tukitiimimme asiakaspalvelijalle?"
        ),
        unsure="Jos tämä ei vastaa kysymykseesi, voin ohjata sinut asiakaspalvelijalle.",
        file_note="Liittämästäsi tiedostosta:",
        language_note=(
            "Ohjeartikkelimme ovat saatavilla vain {kb}, joten vastaukset perustuvat niihin."
        ),
        greeting="Hei! Miten voin auttaa?",
        thanks="Ole hyvä! Voinko auttaa vielä jossakin muussa?",
        bye="Kiitos yhteydenotosta. Mukavaa päivänjatkoa!",
        ack="Hienoa! Voinko auttaa vielä jossakin muussa?",
        names={
            "en": "englanniksi",
            "fr": "ranskaksi",
            "de": "saksaksi",
            "es": "espanjaksi",
            "it": "italiaksi",
            "nl": "hollanniksi",
            "pt": "portugaliksi",
            "sv": "ruotsiksi",
            "da": "tanskaksi",
            "no": "norjaksi",
            "fi": "suomeksi",
            "pl": "puolaksi",
        },
        courtesy=Courtesy(
            greeting=r"hei|moi|moikka|terve|päivää|hyvää (?:päivää|huomenta|iltaa)",
            thanks=r"kiitos|kiitoksia|kiitti",
            bye=r"näkemiin|heippa|hei hei|moi moi|hyvää päivänjatkoa",
            filler=frozenset("ok okei selvä hyvä hienoa loistava paljon oikein avusta".split()),
        ),
    ),
    # Polish inflects a language's name: the note uses "w języku angielskim" (locative).
    "pl": Phrases(
        abstain=(
            "Niestety nie ma tego w naszych dokumentach, a nie chcę zgadywać. Czy mam połączyć "
            "Cię z kimś z naszego zespołu wsparcia?"
        ),
        unsure="Jeśli to nie odpowiada na Twoje pytanie, mogę połączyć Cię z konsultantem.",
        file_note="Z załączonego pliku:",
        language_note=(
            "Nasze artykuły pomocy są dostępne tylko w języku {kb}, więc odpowiedzi pochodzą z "
            "dokumentów w języku {kb}."
        ),
        greeting="Dzień dobry! W czym mogę pomóc?",
        thanks="Nie ma za co! Czy mogę pomóc w czymś jeszcze?",
        bye="Dziękujemy za kontakt. Miłego dnia!",
        ack="Świetnie! Czy mogę pomóc w czymś jeszcze?",
        names={
            "en": "angielskim",
            "fr": "francuskim",
            "de": "niemieckim",
            "es": "hiszpańskim",
            "it": "włoskim",
            "nl": "niderlandzkim",
            "pt": "portugalskim",
            "sv": "szwedzkim",
            "da": "duńskim",
            "no": "norweskim",
            "fi": "fińskim",
            "pl": "polskim",
        },
        courtesy=Courtesy(
            greeting=r"dzień dobry|dzien dobry|cześć|czesc|witam|witajcie|dobry wieczór",
            thanks=r"dziękuję|dziekuje|dziękujemy|dzięki|dzieki",
            bye=r"do widzenia|do zobaczenia|miłego dnia|milego dnia",
            filler=frozenset(
                "ok okej dobrze super świetnie bardzo wielkie serdecznie za pomoc".split()
            ),
        ),
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


COURTESY: dict[str, Courtesy] = {
    code: p.courtesy for code, p in PHRASES.items() if p.courtesy is not None
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
