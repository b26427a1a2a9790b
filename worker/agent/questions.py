"""What kind of answer a question wants, and whether a sentence has that kind of content.

Word overlap alone picks the sentence that *mentions* the question's topic most, which is often an
introduction ("Here's how long it takes") rather than the fact. Customers' question words say
what the fact looks like: "how long" wants a duration, "how much" an amount, "how do I" steps.
These patterns are about question and answer forms (English, and one `FORMS` entry for each other
language the engine detects and stems: French, German, Spanish, Italian, Dutch, Portuguese,
Swedish, Danish, Norwegian, Finnish, Polish), never about one help centre's topics, so they carry
over to any knowledge base.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from worker.agent.analysis import ANALYZER, form_related_stems, related_stems


class Ask(StrEnum):
    """The shape of answer a question expects."""

    DURATION = "duration"  # how long, when, until when, does it expire
    AMOUNT = "amount"  # how much, cost, price, fee
    COUNT = "count"  # how many (not of a time unit)
    STEPS = "steps"  # how do I, how to
    YESNO = "yesno"  # can I, do you, is there
    OTHER = "other"  # what, which, why, and everything else


_LEAD = r"^\W*(?:(?:so|and|but|also|ok|okay|hi|hello|hey|um|well|please|quick question)\W+)*"
_TIME_UNIT = (
    r"(?:seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|nights?|weeks?|wks?|months?|years?|yrs?)"
)
_NUMBER = (
    r"(?:\d+(?:[.,]\d+)?(?:\s*(?:[–—-]|to)\s*\d+(?:[.,]\d+)?)?|one|two|three|four|five|six|"
    r"seven|eight|nine|ten|eleven|twelve|fourteen|fifteen|twenty|thirty|a few|several|a couple of)"
)
_CURRENCY = r"(?:[€$£¥₹]|\b(?:eur|euros?|usd|dollars?|gbp|pounds?|chf|francs?|cents?|kr)\b)"

_QUESTION: tuple[tuple[Ask, re.Pattern[str]], ...] = (
    (Ask.AMOUNT, re.compile(_LEAD + r"how much\b")),
    # "what happens if I don't pay the import charges?" asks for a consequence: its nouns
    # ("charges", "fee") and negations are the situation, not a request for an amount or a fix
    (
        Ask.OTHER,
        re.compile(_LEAD + r"what (?:happens|will happen|happened) (?:if|when|after|to)\b"),
    ),
    (Ask.DURATION, re.compile(rf"\bhow many (?:(?:business|working|calendar) )?{_TIME_UNIT}\b")),
    (Ask.COUNT, re.compile(r"\bhow many\b")),
    (
        Ask.DURATION,
        re.compile(
            r"\bhow (?:long|soon|quickly|fast|late|early|often)\b|\bwhen (?:will|do|does|did|is|"
            r"are|can|should|would|was|were)\b|\b(?:what time|which day|what day|by when|till "
            r"when|until when|deadline|expires?|expired|expiry|expiration|valid for|validity|"
            r"time limit|time frame|timeframe|window)\b|" + _LEAD + r"when\b"
        ),
    ),
    (
        Ask.AMOUNT,
        re.compile(
            r"\bhow much\b|\b(?:cost|costs|costing|price|prices|pricing|priced|fee|fees|charge|"
            r"charges|expensive|cheap|cheaper|tariff|rates?|amount|value)\b"
        ),
    ),
    (
        Ask.STEPS,
        re.compile(
            _LEAD + r"(?:how (?:do|can|should|would|to)\b|what (?:are|is) the steps\b|"
            r"steps? (?:to|for)\b|walk me through\b)|\bhow (?:do|can) (?:i|we)\b|"
            # "what do I do now?" asks for a course of action, not a yes or a no
            r"\bwhat (?:do|can|should|shall|must) (?:i|we) do\b|\bwhat (?:now|next)\b"
        ),
    ),
    (
        Ask.YESNO,
        re.compile(
            _LEAD + r"(?:can|could|do|does|did|is|are|was|will|would|should|may|am|have|has|"
            r"isnt|arent|dont|doesnt|cant|wont)\b|\b(?:can|could|may|do|does|will|would|is|are) "
            r"(?:i|we|you|it|they|there|this|that)\b"
        ),
    ),
    (
        # a reported problem ("headphones wont connect", "card keeps getting declined") wants a fix
        Ask.STEPS,
        re.compile(
            r"\b(?:wont|doesnt|dont|cant|cannot|isnt|arent|didnt|hasnt|havent|not working|"
            r"stopped|keeps|kept|fails?|failed|broken|broke|error|crash(?:es|ed|ing)?|"
            r"freez(?:es|ing)|frozen|stuck|dead|slow)\b"
        ),
    ),
)

# Question forms and answer shapes in the other languages the engine stems and answers in
# (ISO 639-1): one `Forms` entry per language, so a new language is one entry here (its fixed
# sentences are one entry in `phrases.PHRASES`). Grammar only: question words, modal verbs, the
# nouns every language uses for "price" and "deadline", time units, number words, weekdays and
# months, the polite imperative of help articles; never a help centre's topics.


@dataclass(frozen=True)
class Forms:
    """One language's question forms and what their answers look like.

    `questions`: (kind, pattern) checked in this order on the lower-cased question with
    apostrophes removed, as `_QUESTION` is for English: a duration before a count ("combien de
    jours" is a duration, "combien de colis" a count), an explicit price question before a bare
    "how much". The rest are regex alternations for answer sentences: `units` of time, `numbers`
    written as words, `calendar` (space-separated weekdays and months, a duration), `soon`
    (weak duration evidence: "immédiatement", "avant"), `instruction` (the imperative that opens
    a help article's step: "Ouvrez", "Öffnen Sie", "Abre"), `free` (an amount: "gratuit"), `to`
    (the word between the ends of a range: "deux à quatre jours"; "" when the language writes a
    dash). Digits, currency signs and "%" are the same everywhere (`_ANSWER`'s English patterns
    still apply beside them: a French article may write "24h" or "5 business days")."""

    questions: tuple[tuple[Ask, str], ...]
    units: str
    numbers: str
    calendar: str
    soon: str
    instruction: str
    free: str
    to: str


FORMS: dict[str, Forms] = {
    "fr": Forms(
        questions=(
            (
                Ask.AMOUNT,
                r"\bcombien (?:ça |ca |cela )?(?:co[uû]te|co[uû]tent|faut-il payer|dois-je payer)",
            ),
            (
                Ask.DURATION,
                r"\bcombien de (?:temps|jours|heures|minutes|semaines|mois|ans|années|annees)\b|"
                r"\bquand\b|\bà quelle heure\b|\bjusqu.à quand\b|\bd[ée]lai|\bdur[ée]e\b|"
                r"\bexpir|\bvalable\b|\bvalidit",
            ),
            (Ask.COUNT, r"\bcombien de\b"),
            (Ask.AMOUNT, r"\bcombien\b|\b(?:prix|co[uû]ts?|tarifs?|frais|montant)\b"),
            (
                Ask.STEPS,
                r"^\W*comment\b|\bcomment (?:puis|peut|faire|dois|faut|on)\b|"
                r"\bque (?:dois-je )?faire\b|\bquelles sont les [ée]tapes\b",
            ),
            (
                Ask.YESNO,
                r"^\W*(?:est-ce que?|est-ce qu|puis-je|peut-on|pouvez-vous|peux-tu|y a-t-il|"
                r"est-il|ai-je|dois-je|faut-il|avez-vous|livrez-vous|acceptez-vous)\b",
            ),
        ),
        units=r"secondes?|minutes?|heures?|jours?|nuits?|semaines?|mois|ans|années?|annees?",
        numbers="un une deux trois quatre cinq six sept huit neuf dix onze douze quinze vingt "
        "trente quarante soixante quelques plusieurs",
        calendar="lundi mardi mercredi jeudi vendredi samedi dimanche week-end janvier février "
        "mars avril juin juillet août septembre octobre novembre décembre",
        soon=r"imm[ée]diatement|tout de suite|dès|jusqu|avant|après|sous|le jour même|lendemain|"
        r"demain|aujourd|expire|valable",
        instruction=r"ouvrez|choisissez|s[ée]lectionnez|cliquez|appuyez|touchez|saisissez|entrez|"
        r"indiquez|allez|rendez-vous|connectez|d[ée]connectez|red[ée]marrez|d[ée]branchez|"
        r"branchez|attendez|v[ée]rifiez|contactez|envoyez|t[ée]l[ée]chargez|installez|"
        r"confirmez|suivez|maintenez|activez|d[ée]sactivez|modifiez|ajoutez|supprimez|imprimez|"
        r"collez|emballez|d[ée]posez|renvoyez|utilisez",
        free=r"gratuit|gratuite|gratuitement|sans frais|offert|offerte",
        to="à|a",
    ),
    "de": Forms(
        questions=(
            (
                Ask.AMOUNT,
                r"\bwie ?viel (?:kostet|kosten|zahle|muss ich zahlen|betr[äa]gt)|\bwas kostet\b",
            ),
            (
                Ask.DURATION,
                r"\bwie (?:lange|schnell|oft|bald)\b|\bwann\b|\bbis wann\b|\bwie ?viele (?:tage|"
                r"stunden|minuten|wochen|monate|jahre|werktage)\b|\bfrist\b|\bg[üu]ltig|"
                r"\bl[äa]uft ab\b",
            ),
            (Ask.COUNT, r"\bwie ?viele\b"),
            (Ask.AMOUNT, r"\bwie ?viel\b|\b(?:kosten|kostet|preise?|geb[üu]hren?|betrag)\b"),
            (
                Ask.STEPS,
                r"\bwie (?:kann|muss|soll|k[öo]nnen|l[äa]sst sich) (?:ich|man|wir)\b|^\W*wie\b|"
                r"\bwas (?:muss|soll|kann) ich tun\b",
            ),
            (
                Ask.YESNO,
                r"^\W*(?:kann|kannst|k[öo]nnen|darf|d[üu]rfen|muss|m[üu]ssen|ist|sind|gibt es|habe|"
                r"hat|haben|wird|werden|liefern|akzeptieren)\b",
            ),
        ),
        units=r"sekunden?|minuten?|stunden?|tagen?|tage|nächte|wochen?|monaten?|monate|jahren?|"
        r"jahre|werktagen?|werktage|arbeitstagen?|arbeitstage",
        numbers="ein eine einen einem zwei drei vier fünf sechs sieben acht neun zehn elf zwölf "
        "vierzehn fünfzehn zwanzig dreißig wenigen wenige einigen einige",
        calendar="montag dienstag mittwoch donnerstag freitag samstag sonntag wochenende januar "
        "februar märz april mai juni juli august september oktober november dezember",
        soon=r"sofort|umgehend|bis|vor|nach|innerhalb|am selben tag|morgen|heute|gültig|läuft ab",
        instruction=r"(?:[öo]ffnen|w[äa]hlen|klicken|tippen|dr[üu]cken|geben|gehen|melden|"
        r"verbinden|"
        r"trennen|starten|ziehen|stecken|warten|pr[üu]fen|kontaktieren|senden|schicken|laden|"
        r"installieren|best[äa]tigen|folgen|halten|aktivieren|deaktivieren|[äa]ndern|f[üu]gen|"
        r"l[öo]schen|drucken|verpacken|nutzen|verwenden)(?: sie)?",
        free=r"kostenlos|gratis|umsonst|ohne gebühr|gebührenfrei",
        to="bis",
    ),
    "es": Forms(
        questions=(
            (Ask.AMOUNT, r"\bcu[áa]nto (?:cuesta|cuestan|vale|valen|cobran|hay que pagar)\b"),
            (
                Ask.DURATION,
                r"\bcu[áa]nto (?:tiempo|tarda|tardan|demora)\b|"
                r"\bcu[áa]ntos (?:d[íi]as|horas|minutos|meses|años|anos)\b|"
                r"\bcu[áa]ntas (?:horas|semanas)\b|\bcu[áa]ndo\b|\bhasta cu[áa]ndo\b|\bplazo\b|"
                r"\bcaduca|\bvence|\bv[áa]lid",
            ),
            (Ask.COUNT, r"\bcu[áa]nt[oa]s\b"),
            (Ask.AMOUNT, r"\bcu[áa]nto\b|\b(?:precios?|coste|costo|tarifas?|comisi[óo]n)\b"),
            (
                Ask.STEPS,
                r"\bc[óo]mo\b|\bqu[ée] (?:tengo que|debo|hay que) hacer\b|\bqu[ée] hago\b|"
                r"\bpasos\b",
            ),
            (
                Ask.YESNO,
                r"^\W*(?:puedo|puede|pueden|podemos|hay|es|est[áa]|tienen|tengo|hacen|env[íi]an|"
                r"aceptan)\b",
            ),
        ),
        units=r"segundos?|minutos?|horas?|d[íi]as?|noches?|semanas?|meses|mes|años?|anos?",
        numbers="un una uno dos tres cuatro cinco seis siete ocho nueve diez once doce quince "
        "veinte treinta unos unas algunos pocos",
        calendar="lunes martes miércoles jueves viernes sábado domingo enero febrero marzo "
        "abril mayo junio julio agosto septiembre octubre noviembre diciembre",
        soon=r"inmediatamente|enseguida|hasta|antes|después|dentro de|mismo día|mañana|hoy|"
        r"válid[oa]|caduca",
        instruction=r"abre|abra|elige|elija|selecciona|seleccione|haz clic|haga clic|pulsa|"
        r"pulse|toca|toque|introduce|introduzca|escribe|ve a|vaya a|inicia|inicie|conecta|conecte|"
        r"desconecta|reinicia|reinicie|desenchufa|enchufa|espera|espere|comprueba|compruebe|"
        r"contacta|contacte|env[íi]a|env[íi]e|descarga|descargue|instala|confirma|confirme|"
        r"sigue|siga|mant[ée]n|mantenga|activa|desactiva|cambia|cambie|a[ñn]ade|elimina|"
        r"imprime|usa|use|utiliza",
        free=r"gratis|gratuito|gratuita|sin coste|sin costo|sin cargo",
        to="a|y",
    ),
    "it": Forms(
        questions=(
            (Ask.AMOUNT, r"\bquanto (?:costa|costano|si paga|devo pagare)\b"),
            (
                Ask.DURATION,
                r"\bquanto tempo\b|\bquanto ci (?:vuole|mette)\b|"
                r"\bquant[ei] (?:giorni|ore|minuti|settimane|mesi|anni)\b|"
                r"\bquando\b|\bentro quando\b|\bscad|\bvalid",
            ),
            (Ask.COUNT, r"\bquant[ei]\b"),
            (Ask.AMOUNT, r"\bquanto\b|\b(?:prezz[oi]|cost[oi]|tariff[ae]|commission[ei])\b"),
            (
                Ask.STEPS,
                r"^\W*come\b|\bcome (?:posso|faccio|si|devo|fare)\b|\bcosa (?:devo|posso) fare\b|"
                r"\bpassaggi\b",
            ),
            (
                Ask.YESNO,
                r"^\W*(?:posso|può|puo|potete|c[eè]|ci sono|è|avete|spedite|accettate)\b",
            ),
        ),
        units=r"secondi|minuti|ore|ora|giorni|giorno|notti|settimane|settimana|mesi|mese|anni|anno",
        numbers="un una uno due tre quattro cinque sei sette otto nove dieci undici dodici "
        "quindici venti trenta alcuni pochi",
        calendar="lunedì martedì mercoledì giovedì venerdì sabato domenica gennaio febbraio marzo "
        "aprile maggio giugno luglio agosto settembre ottobre novembre dicembre",
        soon=r"immediatamente|subito|fino a|entro|prima|dopo|stesso giorno|domani|oggi|"
        r"valid[oa]|scade",
        instruction=r"apri|scegli|seleziona|clicca|fai clic|premi|tocca|inserisci|digita|vai|"
        r"accedi|"
        r"connetti|scollega|riavvia|collega|attendi|aspetta|controlla|verifica|contatta|invia|"
        r"scarica|installa|conferma|segui|tieni premuto|attiva|disattiva|modifica|aggiungi|"
        r"elimina|stampa|usa|utilizza|imballa",
        free=r"gratis|gratuito|gratuita|senza costi",
        to="a|e",
    ),
    "nl": Forms(
        questions=(
            (Ask.AMOUNT, r"\bhoeveel (?:kost|kosten|betaal)|\bwat kost\b"),
            (
                Ask.DURATION,
                r"\bhoe ?lang\b|\bhoe snel\b|\bwanneer\b|\bhoeveel (?:dagen|uur|uren|minuten|"
                r"weken|maanden|jaar|werkdagen)\b|\btermijn|\bverloopt|\bgeldig",
            ),
            (Ask.COUNT, r"\bhoeveel\b"),
            (Ask.AMOUNT, r"\b(?:kosten|kost|prijs|prijzen|tarief|tarieven)\b"),
            (
                Ask.STEPS,
                r"^\W*hoe\b|\bhoe (?:kan|moet|doe|kun)\b|\bwat (?:moet|kan) ik doen\b|\bstappen\b",
            ),
            (
                Ask.YESNO,
                r"^\W*(?:kan|kun|kunt|mag|moet|is|zijn|heb|hebben|heeft|leveren|bezorgen|wordt|"
                r"accepteren)\b",
            ),
        ),
        units=r"seconden?|minuten|minuut|uur|uren|dagen|dag|nachten|weken|week|maanden|maand|jaar|"
        r"jaren|werkdagen|werkdag",
        numbers="een twee drie vier vijf zes zeven acht negen tien elf twaalf veertien vijftien "
        "twintig dertig enkele paar",
        calendar="maandag dinsdag woensdag donderdag vrijdag zaterdag zondag weekend januari "
        "februari maart april mei juni juli augustus september oktober november december",
        soon=r"direct|meteen|onmiddellijk|tot|voor|na|binnen|dezelfde dag|morgen|vandaag|geldig|"
        r"verloopt",
        instruction=r"open|kies|selecteer|klik|druk|tik|vul|voer|typ|ga naar|log in|meld je aan|"
        r"verbind|koppel|ontkoppel|herstart|start|trek|steek|wacht|controleer|neem contact|"
        r"stuur|verstuur|download|installeer|bevestig|volg|houd|zet|schakel|wijzig|voeg|"
        r"verwijder|print|gebruik|pak",
        free=r"gratis|kosteloos|zonder kosten",
        to="tot",
    ),
    "pt": Forms(
        questions=(
            (Ask.AMOUNT, r"\bquanto (?:custa|custam|pago|vale)\b"),
            (
                Ask.DURATION,
                r"\bquanto tempo\b|\bquanto demora\b|"
                r"\bquant[oa]s (?:dias|horas|minutos|semanas|meses|anos)\b|"
                r"\bquando\b|\baté quando\b|\bprazo\b|\bexpira|\bv[áa]lid",
            ),
            (Ask.COUNT, r"\bquant[oa]s\b"),
            (Ask.AMOUNT, r"\bquanto\b|\b(?:pre[çc]os?|custos?|taxas?|tarifas?)\b"),
            (
                Ask.STEPS,
                r"^\W*como\b|\bcomo (?:posso|fa[çc]o|devo|se)\b|\bo que (?:devo|posso) fazer\b|"
                r"\bpassos\b",
            ),
            (
                Ask.YESNO,
                r"^\W*(?:posso|pode|podem|podemos|há|ha|é|voc[êe]s|tem|t[êe]m|entregam|enviam|"
                r"aceitam)\b",
            ),
        ),
        units=r"segundos?|minutos?|horas?|dias?|noites?|semanas?|meses|mês|mes|anos?",
        numbers="um uma dois duas três tres quatro cinco seis sete oito nove dez onze doze quinze "
        "vinte trinta alguns poucos",
        calendar="segunda-feira terça-feira quarta-feira quinta-feira sexta-feira sábado domingo "
        "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro",
        soon=r"imediatamente|logo|até|antes|depois|dentro de|mesmo dia|amanhã|hoje|válid[oa]|"
        r"expira",
        instruction=r"abra|abre|escolha|escolhe|selecione|seleciona|clique|carregue|prima|toque|"
        r"introduza|insira|digite|v[áa] a|v[áa] para|inicie|ligue|desligue|conecte|desconecte|"
        r"reinicie|aguarde|espere|verifique|contacte|entre em contato|envie|transfira|baixe|"
        r"instale|confirme|siga|mantenha|ative|desative|altere|adicione|elimine|imprima|use|"
        r"utilize",
        free=r"grátis|gratis|gratuito|gratuita|sem custo",
        to="a|e",
    ),
    "sv": Forms(
        questions=(
            (Ask.AMOUNT, r"\bvad kostar\b|\bhur mycket (?:kostar|betalar|ska jag betala)\b"),
            (
                Ask.DURATION,
                r"\bhur (?:lång tid|länge|snabbt|fort|ofta)\b|\bnär\b|\btill när\b|"
                r"\bhur många (?:dagar|timmar|minuter|veckor|månader|år|arbetsdagar)\b|"
                r"\bgiltig|\bgår ut\b|\bfrist\b",
            ),
            (Ask.COUNT, r"\bhur många\b"),
            (Ask.AMOUNT, r"\bhur mycket\b|\b(?:kostar|kostnad\w*|pris\w*|avgift\w*)\b"),
            (
                Ask.STEPS,
                r"^\W*hur\b|\bhur (?:gör|kan|ska|får) (?:jag|man|vi)\b|"
                r"\bvad (?:ska|kan|bör) jag göra\b|\bvilka steg\b",
            ),
            (
                Ask.YESNO,
                r"^\W*(?:kan|får|måste|ska|är|finns|har|levererar|skickar|accepterar|tar)\b",
            ),
        ),
        units=r"sekunder|sekund|minuter|minut|timmar|timme|dagar|dag|nätter|natt|veckor|vecka|"
        r"månader|månad|år|arbetsdagar|arbetsdag|vardagar|vardag",
        numbers="en ett två tre fyra fem sex sju åtta nio tio elva tolv fjorton femton tjugo "
        "trettio några flera",
        calendar="måndag tisdag onsdag torsdag fredag lördag söndag helgen januari februari mars "
        "april maj juni juli augusti september oktober november december",
        soon=r"direkt|omedelbart|genast|senast|före|innan|efter|inom|samma dag|i morgon|imorgon|"
        r"i dag|idag|giltig|går ut",
        instruction=r"öppna|välj|klicka|tryck|ange|skriv|gå till|logga in|anslut|koppla|"
        r"starta om|starta|dra ur|vänta|kontrollera|kontakta|skicka|ladda ner|installera|"
        r"bekräfta|följ|håll|aktivera|inaktivera|ändra|lägg till|ta bort|skriv ut|använd|packa",
        free=r"gratis|kostnadsfri|kostnadsfritt|utan kostnad|avgiftsfri|avgiftsfritt",
        to="till",
    ),
    "da": Forms(
        questions=(
            (Ask.AMOUNT, r"\bhvad koster\b|\bhvor meget (?:koster|betaler|skal jeg betale)\b"),
            (
                Ask.DURATION,
                r"\bhvor (?:lang tid|længe|hurtigt|ofte)\b|\bhvornår\b|"
                r"\bhvor mange (?:dage|timer|minutter|uger|måneder|år|hverdage|arbejdsdage)\b|"
                r"\bgyldig|\budløber\b|\bfrist\b",
            ),
            (Ask.COUNT, r"\bhvor mange\b"),
            (Ask.AMOUNT, r"\bhvor meget\b|\b(?:koster|pris\w*|gebyr\w*|omkostning\w*)\b"),
            (
                Ask.STEPS,
                r"^\W*hvordan\b|\bhvordan (?:kan|skal|gør) (?:jeg|man|vi)\b|"
                r"\bhvad (?:skal|kan|bør) jeg gøre\b|\bhvilke trin\b",
            ),
            (
                Ask.YESNO,
                r"^\W*(?:kan|må|skal|er|findes|har|leverer|sender|accepterer|tager)\b",
            ),
        ),
        units=r"sekunder|sekund|minutter|minut|timer|time|dage|dag|nætter|nat|uger|uge|"
        r"måneder|måned|år|hverdage|hverdag|arbejdsdage|arbejdsdag",
        numbers="en et to tre fire fem seks syv otte ni ti elleve tolv fjorten femten tyve "
        "tredive nogle flere",
        calendar="mandag tirsdag onsdag torsdag fredag lørdag søndag weekenden januar februar "
        "marts april maj juni juli august september oktober november december",
        soon=r"straks|med det samme|omgående|senest|før|inden|efter|inden for|samme dag|"
        r"i morgen|i dag|gyldig|udløber",
        instruction=r"åbn|vælg|klik|tryk|indtast|skriv|gå til|log ind|forbind|tilslut|"
        r"genstart|start|træk|vent|kontrollér|kontroller|tjek|kontakt|send|download|installer|"
        r"bekræft|følg|hold|aktivér|aktiver|deaktiver|skift|ændr|tilføj|slet|udskriv|brug|pak",
        free=r"gratis|uden beregning|uden gebyr|omkostningsfrit",
        to="til",
    ),
    "no": Forms(
        questions=(
            (Ask.AMOUNT, r"\bhva koster\b|\bhvor mye (?:koster|betaler|må jeg betale)\b"),
            (
                Ask.DURATION,
                r"\bhvor (?:lang tid|lenge|raskt|fort|ofte)\b|\bnår\b|"
                r"\bhvor mange (?:dager|timer|minutter|uker|måneder|år|virkedager|"
                r"arbeidsdager)\b|\bgyldig|\butløper\b|\bfrist\b",
            ),
            (Ask.COUNT, r"\bhvor mange\b"),
            (Ask.AMOUNT, r"\bhvor mye\b|\b(?:koster|pris\w*|gebyr\w*|kostnad\w*|avgift\w*)\b"),
            (
                Ask.STEPS,
                r"^\W*hvordan\b|\bhvordan (?:kan|skal|gjør) (?:jeg|man|vi)\b|"
                r"\bhva (?:skal|kan|bør) jeg gjøre\b|\bhvilke trinn\b",
            ),
            (
                Ask.YESNO,
                r"^\W*(?:kan|får|må|skal|er|finnes|har|leverer|sender|godtar|tar)\b",
            ),
        ),
        units=r"sekunder|sekund|minutter|minutt|timer|time|dager|dag|døgn|netter|natt|uker|uke|"
        r"måneder|måned|år|virkedager|virkedag|arbeidsdager|arbeidsdag",
        numbers="en ei et to tre fire fem seks sju syv åtte ni ti elleve tolv fjorten femten "
        "tjue tretti noen flere",
        calendar="mandag tirsdag onsdag torsdag fredag lørdag søndag helgen januar februar mars "
        "april mai juni juli august september oktober november desember",
        soon=r"umiddelbart|straks|med en gang|senest|før|innen|etter|samme dag|i morgen|i dag|"
        r"gyldig|utløper",
        instruction=r"åpne|velg|klikk|trykk|skriv inn|skriv|oppgi|gå til|logg inn|koble til|"
        r"koble fra|start på nytt|start|trekk ut|vent|kontroller|sjekk|kontakt|send|last ned|"
        r"installer|bekreft|følg|hold|aktiver|deaktiver|endre|legg til|slett|skriv ut|bruk|pakk",
        free=r"gratis|kostnadsfri|kostnadsfritt|uten kostnad|uten gebyr",
        to="til",
    ),
    # Finnish inflects its nouns, so units and "price" are matched by their stems ("päivä\w*":
    # päivää, päivässä, päivän); a yes-no question is a verb with -ko/-kö ("voinko", "onko").
    "fi": Forms(
        questions=(
            (Ask.AMOUNT, r"\b(?:paljonko|kuinka paljon|mitä) (?:\w+ )?(?:maksaa|maksavat)\b"),
            (
                Ask.DURATION,
                r"\b(?:kuinka|miten) (?:kauan|pitkään|nopeasti|usein)\b|\bkauanko\b|"
                r"\bmilloin\b|\bmihin mennessä\b|\b(?:kuinka monta|montako) (?:päivää|tuntia|"
                r"minuuttia|viikkoa|kuukautta|vuotta|arkipäivää)\b|\bvoimassa\b|\bvanhene",
            ),
            (Ask.COUNT, r"\bkuinka monta\b|\bmontako\b"),
            (Ask.AMOUNT, r"\bpaljonko\b|\bkuinka paljon\b|\b(?:hin[nt]\w*|maksu\w*|kulu\w*)\b"),
            (
                Ask.STEPS,
                r"^\W*(?:miten|kuinka)\b|\bmiten (?:voin|saan|pitää|teen)\b|"
                r"\bmitä (?:minun )?(?:pitää|pitäisi|täytyy) tehdä\b|\bmitä teen\b",
            ),
            (Ask.YESNO, r"^\W*\w+(?:ko|kö)\b"),
        ),
        units=r"sekunti\w*|sekunni\w*|minuutti\w*|minuuti\w*|tunti\w*|tunni\w*|päivä\w*|"
        r"päivi\w*|yö\w*|viikko\w*|viiko\w*|kuukau\w*|kuukausi\w*|vuosi\w*|vuode\w*|vuotta|"
        r"arkipäiv\w*",
        numbers="yksi yhden yhdessä kaksi kahden kahdessa kolme kolmen kolmessa neljä neljän "
        "viisi viiden kuusi kuuden seitsemän kahdeksan yhdeksän kymmenen viisitoista "
        "kaksikymmentä kolmekymmentä muutama muutaman useita",
        calendar="maanantai maanantaina tiistai tiistaina keskiviikko keskiviikkona torstai "
        "torstaina perjantai perjantaina lauantai lauantaina sunnuntai sunnuntaina viikonloppu "
        "viikonloppuna tammikuussa helmikuussa maaliskuussa huhtikuussa toukokuussa kesäkuussa "
        "heinäkuussa elokuussa syyskuussa lokakuussa marraskuussa joulukuussa",
        soon=r"heti|välittömästi|viimeistään|ennen|jälkeen|kuluessa|sisällä|samana päivänä|"
        r"huomenna|tänään|voimassa|vanhenee",
        instruction=r"avaa|valitse|napsauta|napauta|paina|kirjoita|syötä|anna|siirry|kirjaudu|"
        r"yhdistä|irrota|käynnistä|odota|tarkista|ota yhteyttä|lähetä|lataa|asenna|vahvista|"
        r"seuraa|pidä|ota käyttöön|poista|muuta|lisää|tulosta|käytä|pakkaa",
        free=r"ilmai\w*|maksuton|maksuttomasti|maksutta|veloituksetta|ilman lisämaksua",
        to="",
    ),
    # Polish "ile" is both "how much" and "how many": a price word makes it an amount first.
    "pl": Forms(
        questions=(
            (
                Ask.AMOUNT,
                r"\bile (?:kosztuje|kosztują|zapłacę|trzeba zapłacić|muszę zapłacić)\b|"
                r"\bjaki jest koszt\b|\bjaka jest cena\b",
            ),
            (
                Ask.DURATION,
                r"\bjak (?:długo|szybko|często)\b|\bkiedy\b|\bdo kiedy\b|\bile (?:czasu|dni|"
                r"godzin|minut|tygodni|miesięcy|lat)\b|\bw jakim terminie\b|\btermin\w*\b|"
                r"\bważn\w*\b|\bwygas\w*\b",
            ),
            (Ask.AMOUNT, r"\b(?:cen[aięy]|koszt\w*|opłat\w*)\b"),
            (Ask.COUNT, r"\bile\b"),
            (
                Ask.STEPS,
                r"^\W*jak\b|\bjak (?:mogę|mam|można|należy)\b|"
                r"\bco (?:mam|muszę|należy|powinienem|powinnam) (?:teraz )?zrobić\b",
            ),
            (Ask.YESNO, r"^\W*(?:czy|można|mogę|jest|są)\b"),
        ),
        units=r"sekund[ay]?|minut[ay]?|godzin[ay]?|godzinę|dni|dzień|dnia|noce?|nocy|"
        r"tygodni[ae]?|tydzień|miesięcy|miesiące|miesiąc|lat|lata|rok|roku",
        numbers="jeden jedna jednego dwa dwie dwóch trzy trzech cztery czterech pięć pięciu "
        "sześć siedem osiem dziewięć dziesięć czternaście piętnaście dwadzieścia trzydzieści "
        "kilka kilku",
        calendar="poniedziałek poniedziałki wtorek środa środę czwartek piątek sobota sobotę "
        "niedziela niedzielę weekend stycznia lutego marca kwietnia maja czerwca lipca sierpnia "
        "września października listopada grudnia",
        soon=r"natychmiast|od razu|niezwłocznie|przed|w ciągu|najpóźniej|tego samego dnia|"
        r"jutro|dziś|dzisiaj|ważny|ważna|ważne|wygasa",
        instruction=r"otwórz|wybierz|kliknij|naciśnij|dotknij|wpisz|wprowadź|podaj|przejdź|"
        r"zaloguj się|połącz|odłącz|uruchom ponownie|uruchom|wyjmij|poczekaj|odczekaj|sprawdź|"
        r"skontaktuj się|wyślij|pobierz|zainstaluj|potwierdź|postępuj|przytrzymaj|włącz|wyłącz|"
        r"zmień|dodaj|usuń|wydrukuj|użyj|zapakuj",
        free=r"bezpłatn\w*|darmow\w*|za darmo|gratis|bez opłat|nieodpłatn\w*",
        to="do",
    ),
}
_QUESTIONS_BY_LANGUAGE: dict[str, tuple[tuple[Ask, re.Pattern[str]], ...]] = {
    code: tuple((ask, re.compile(pattern)) for ask, pattern in forms.questions)
    for code, forms in FORMS.items()
}


def _answers_in(code: str) -> dict[Ask, tuple[re.Pattern[str], re.Pattern[str] | None]]:
    """`_ANSWER` for another language: its own words beside the English patterns (a help
    article in French may still write "24h" or "5 business days")."""
    forms = FORMS[code]
    words = "|".join(forms.numbers.split())
    to = rf"[–—-]|to|{forms.to}" if forms.to else r"[–—-]|to"
    number = rf"(?:\d+(?:[.,]\d+)?|{words})(?:\s*(?:{to})\s*(?:\d+|{words}))?"
    calendar = "|".join(re.escape(w) for w in forms.calendar.split())
    english = _ANSWER
    duration = re.compile(
        rf"(?<!\w)(?:{number})[\s-]+(?:{forms.units})(?!\w)|(?<!\w)(?:{calendar})(?!\w)|"
        + english[Ask.DURATION][0].pattern,
        re.I,
    )
    soon = re.compile(rf"(?<!\w)(?:{forms.soon})(?!\w)|" + english[Ask.DURATION][1].pattern, re.I)  # type: ignore[union-attr]
    free = re.compile(rf"(?<!\w)(?:{forms.free})(?!\w)|" + english[Ask.AMOUNT][1].pattern, re.I)  # type: ignore[union-attr]
    count = re.compile(rf"(?<!\w)(?:{words})(?!\w)|" + english[Ask.COUNT][0].pattern, re.I)  # type: ignore[union-attr]
    steps = re.compile(
        rf"^(?:[^,]{{0,60}},\s*)?(?:{forms.instruction})(?!\w)|" + english[Ask.STEPS][1].pattern,  # type: ignore[union-attr]
        re.I,
    )
    return {
        **english,
        Ask.STEPS: (None, steps),
        Ask.DURATION: (duration, soon),
        Ask.AMOUNT: (english[Ask.AMOUNT][0], free),
        Ask.COUNT: (count, None),
    }


WEAK = 0.5
FORM_WEIGHT = 0.5  # "how much" also looks for cost/price words, at half a topic word
YESNO_STRENGTH = 0.25
# (strong, weak) evidence that a sentence holds the kind of fact a question type asks for.
_ANSWER: dict[Ask, tuple[re.Pattern[str], re.Pattern[str] | None]] = {
    Ask.DURATION: (
        re.compile(
            rf"\b{_NUMBER}[\s-]+(?:(?:business|working|calendar)[\s-]+)?{_TIME_UNIT}\b|"
            r"\b\d{1,2}:\d{2}\b|\b\d{1,2}(?:[.:]\d{2})?\s?(?:am|pm)\b|\b(?:monday|tuesday|"
            r"wednesday|"
            r"thursday|friday|saturday|sunday|weekends?|january|february|march|april|may|june|"
            r"july|august|september|october|november|december)\b",
            re.I,
        ),
        re.compile(
            r"\b(?:immediately|straight away|right away|instantly|same day|next (?:business |"
            r"working )?day|overnight|any time|as soon as|once|until|after|before|within|"
            r"daily|weekly|monthly|yearly|annually|tomorrow|today|expires?|valid)\b",
            re.I,
        ),
    ),
    Ask.AMOUNT: (
        re.compile(rf"{_CURRENCY}\s?\d|\d(?:[.,]\d+)?\s?{_CURRENCY}", re.I),
        re.compile(r"\b(?:free|no charge|at no cost|nothing extra|\d+\s?%|percent)", re.I),
    ),
    Ask.COUNT: (
        re.compile(
            r"\b\d+\b|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|once|twice)\b", re.I
        ),
        None,
    ),
    Ask.STEPS: (  # a numbered list is the strong form (see compose); prose can instruct too
        None,
        re.compile(
            r"^(?:(?:with|on|in|to|if|when|once|after|before|from|for|while)\b[^,]{0,60},\s*)?"
            r"(?:press|hold|tap|select|go|open|click|turn|switch|enter|choose|restart|unplug|plug|"
            r"remove|connect|disconnect|reset|charge|wait|try|check|use|install|reinstall|update|"
            r"sign|log|contact|set|put|leave|make|follow|pair|forget|delete|send|email|call|add|"
            r"keep|type|scan|allow|download|move|run|find|ask|pick|drop|pack|print|register|"
            r"confirm|clear|swipe|visit|start|cancel|edit|change)\b",
            re.I,
        ),
    ),
    Ask.YESNO: (
        re.compile(r"^(?:yes|no)\b", re.I),
        re.compile(
            r"\b(?:no|not|none|nothing|never|only|always|cannot|can[’']?t|don[’']?t|doesn[’']?t|"
            r"isn[’']?t|aren[’']?t|won[’']?t|unless|except)\b",
            re.I,
        ),
    ),
}

_ANSWERS = {code: _answers_in(code) for code in FORMS}

# "How long does it take...?", "how soon...?" ask for the wait until something happens. A
# duration that says how long something stays usable ("the link is valid for 7 days", "expires
# after 60 minutes") or how often it may happen ("one export every 30 days") is another kind of
# fact: it answers "how long is it valid" or "how often", not the wait.
_WAIT_QUESTION = re.compile(
    r"\bhow (?:long|much time)\b[^?.!]*\btak(?:e|es|ing)\b|\bhow (?:soon|quickly|fast)\b|"
    r"\bhow long (?:until|till|before)\b"
)
_DURATION = _ANSWER[Ask.DURATION][0]
_LASTING_BEFORE = re.compile(
    r"\b(?:valid|good|usable|active|available|kept|stored)(?: for)?\s+(?:up to\s+)?$|"
    r"\b(?:expires?|expiring|lapses?) (?:after|in|within)\s+$|\blasts?(?: for)?\s+(?:up to\s+)?$|"
    r"\b(?:every|each|per|once (?:a|an|every))\s+$",
    re.I,
)


def asks_wait(question: str) -> bool:
    """True for an English question about how long until something happens ("how long does
    it take to get my data export", "how soon will it arrive")."""
    return bool(_WAIT_QUESTION.search(" ".join(question.lower().replace("’", "'").split())))


@lru_cache(maxsize=32768)
def lasting_only(text: str) -> bool:
    """True when every duration in `text` is a validity or a frequency ("valid for 7 days",
    "every 30 days"), so it holds no waiting time. Memoised per sentence, like `answer_match`."""
    found = list(_DURATION.finditer(text))
    return bool(found) and all(
        _LASTING_BEFORE.search(text[max(0, m.start() - 30) : m.start()]) for m in found
    )


# Sentences about the text rather than the topic: they point at an answer instead of giving it.
_NAVIGATION = re.compile(
    r"^(?:here[’']?s|here is|here are|below|the (?:steps|table|list|sections?) below)\b|"
    # sympathy carries no fact: "We're sorry if your product arrived broken" is not the answer
    r"^(?:we[’']?re|we are|we[’']?re really|i[’']?m|i am) (?:so |very |really )?sorry\b|"
    r"^sorry\b|^(?:we )?apologi[sz]e\b|^this (?:article|page|guide|section|help page|faq)\b|"
    r"\b(?:this|the following) (?:article|page|guide|section) (?:explains|covers|describes|"
    r"shows|lists|is about)\b|\b(?:see|read|check out|visit) [\"“‘']|"
    r"\b(?:work through|follow|try) (?:the|these) (?:steps|checks|tips) below\b|"
    r"\b(?:these|the following|the) (?:steps|checks|tips) (?:below )?(?:usually |should )?"
    r"(?:fix|solve|help)\b|"
    r"\b(?:learn|find out|read) more\b|\bfor more (?:information|details|help)\b",
    re.I,
)


_FORM_WORDS = re.compile(r"\bhow (many|much|long|soon|often|far|big|old)\b")


def form_words(question: str) -> set[str]:
    """The words of "how many", "how long"...: they say what kind of answer, not what topic."""
    return set(_FORM_WORDS.findall(question.lower()))


def question_type(question: str, language: str | None = None) -> Ask:
    """The first matching form wins; the table is ordered from the most to the least specific.
    `language` (ISO 639-1): the question's; English, and a language without forms here, use
    the English table."""
    low = " ".join(question.lower().replace("’", "'").replace("'", "").split())
    for ask, pattern in _QUESTIONS_BY_LANGUAGE.get(language or "en", _QUESTION):
        if pattern.search(low):
            return ask
    return Ask.OTHER


@lru_cache(maxsize=32768)
def answer_match(ask: Ask, text: str, language: str | None = None) -> float:
    """How surely `text` holds the kind of fact the question wants: 1 strong, `WEAK` weak, 0 none.

    Memoised per (kind, text, language): each answer asks it of every candidate KB sentence, and
    the answer shapes are long alternations scanned across the whole sentence.

    A yes/no question has no fact shape of its own (a "yes" is any statement about the topic),
    so its evidence, a negation or a modal, only counts `YESNO_STRENGTH` as much. `language`:
    the text's (ISO 639-1; English patterns for English and languages without their own).
    """
    strong, weak = _ANSWERS.get(language or "en", _ANSWER).get(ask, (None, None))
    scale = YESNO_STRENGTH if ask == Ask.YESNO else 1.0
    if strong is not None and strong.search(text):
        return scale
    if weak is not None and weak.search(text):
        return scale * WEAK
    return 0.0


# Word pairs that flip an instruction's meaning: "switch 2FA on" is not answered by "switch it off".
_OPPOSITES: tuple[tuple[str, str], ...] = (
    ("on", "off"),
    ("enable", "disable"),
    ("activate", "deactivate"),
    ("lock", "unlock"),
)
_WORDS = re.compile(r"[a-z]+")
_POLAR = frozenset(w for pair in _OPPOSITES for w in pair)


@lru_cache(maxsize=16384)
def _polar_words(text: str) -> frozenset[str]:
    """The polarity words `text` uses (the only words `contradicts` compares), memoised: every
    answer asks it of every candidate KB sentence, the same sentences again and again."""
    return _POLAR.intersection(_WORDS.findall(text.lower()))


def contradicts(question: str, text: str) -> bool:
    """True when `text` uses the opposite of a polarity word the question uses, and not the word."""
    asked = _polar_words(question)
    if not asked:
        return False  # most questions: nothing to contradict, no need to read the text
    said = _polar_words(text)
    for a, b in _OPPOSITES:
        for word, opposite in ((a, b), (b, a)):
            if word in asked and opposite not in asked and opposite in said and word not in said:
                return True
    return False


@lru_cache(maxsize=16384)
def is_navigational(text: str) -> bool:
    """True for meta sentences ("Here's how...", "See ...", "This article explains...").

    Cached per sentence: every answer asks it of every candidate KB sentence, the same
    sentences again and again, and the pattern's many word-boundary alternatives are scanned
    across the whole sentence (it was ~7 % of a pool process's CPU).
    """
    return bool(_NAVIGATION.search(text.strip()))


def question_weights(weights: dict[str, float], question: str) -> dict[str, float]:
    """Topic words to look for: the question's, minus its form words ("how many"), plus the
    words that form is answered with ("how much": price, cost) at half the mean topic weight,
    so a "Prices" heading marks the section that answers."""
    form = {ANALYZER.stem(w) for w in form_words(question)}
    topic = {t: w for t, w in weights.items() if t not in form} or dict(weights)
    if topic:
        extra = FORM_WEIGHT * sum(topic.values()) / len(topic)
        words = ANALYZER.words(question, keep_stop_words=True)
        for stem in sorted(form_related_stems(words)):
            if stem not in topic and not related_stems(stem) & topic.keys():
                topic[stem] = extra  # one entry per group: "cost" also credits "price" text
    return topic
