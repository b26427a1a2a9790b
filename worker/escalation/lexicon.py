"""Word lists behind the explicit-request detector: who a customer may ask for, and how.

Every list is ordinary English written for this module (no training data), so a rule can be
read, argued about and extended without touching the matching code in `request.py`.
"""

from __future__ import annotations

# --- the people behind a support desk -------------------------------------------------------

#: Nouns that name a member of staff. Surface form -> lemma (plurals and variants included).
PERSON_NOUNS: dict[str, str] = {
    **{w: "human" for w in ("human", "humans", "hooman", "humanbeing")},
    **{w: "person" for w in ("person", "persons", "people", "ppl")},
    **{w: "agent" for w in ("agent", "agents")},
    **{w: "representative" for w in ("representative", "representatives", "rep", "reps")},
    **{w: "operator" for w in ("operator", "operators", "operater")},
    **{w: "assistant" for w in ("assistant", "assistants")},
    **{w: "executive" for w in ("executive", "executives", "exec")},
    **{w: "advisor" for w in ("advisor", "advisors", "adviser", "advisers")},
    **{w: "associate" for w in ("associate", "associates")},
    **{w: "specialist" for w in ("specialist", "specialists", "expert", "experts")},
    **{w: "supervisor" for w in ("supervisor", "supervisors")},
    **{w: "manager" for w in ("manager", "managers", "management")},
    **{w: "staff" for w in ("staff", "staffer", "staffers", "personnel")},
    **{w: "employee" for w in ("employee", "employees", "worker", "workers")},
    **{w: "consultant" for w in ("consultant", "consultants", "counsellor", "counselor")},
    **{w: "technician" for w in ("technician", "technicians", "engineer", "engineers")},
    **{w: "attendant" for w in ("attendant", "attendants", "clerk", "officer", "officers")},
    **{w: "boss" for w in ("boss", "founder", "founders", "owner", "owners", "ceo", "director")},
}

#: Heads that only mean people with a qualifier ("customer service") or after "contact".
DESK_NOUNS: frozenset[str] = frozenset(
    "support service services care desk helpdesk helpline hotline team department centre center"
    " office member members assistance help".split()
)

#: Words that turn a desk noun into people: "customer care", "tech support", "call centre".
DESK_QUALIFIERS: frozenset[str] = frozenset(
    "customer customers costumer client tech technical it help contact call support service sales"
    " care billing account human live real team staff".split()
)

#: Pronouns that name an unknown person: a target only when contact is the point.
PRONOUNS: dict[str, str] = {
    **{w: "someone" for w in ("someone", "somebody", "somone", "sombody")},
    **{w: "anyone" for w in ("anyone", "anybody", "anyony")},
}

#: Words that make a person noun unmistakably a human being ("a real person", "live agent").
MODIFIERS: frozenset[str] = frozenset(
    "real live actual proper genuine physical living breathing human flesh blood".split()
)

#: Qualifiers that make the person someone other than our staff ("travel agent", "my manager").
THIRD_PARTY: frozenset[str] = frozenset(
    "my his her their our delivery courier postman travel estate insurance secret fbi user"
    " booking shipping landlord".split()
)

#: Outside parties who may phone a customer: "does the courier call me?" asks about them.
EXTERNAL_CALLERS: frozenset[str] = frozenset(
    "courier driver carrier postman postwoman bank seller shop store restaurant dhl ups fedex"
    " usps hermes dpd gls delivery doctor landlord school".split()
)

#: "call me" idioms that name-call instead of asking for a call ("call me crazy").
CALL_IDIOMS: frozenset[str] = frozenset(
    "crazy old-fashioned oldfashioned picky paranoid silly stupid names skeptical sceptical"
    " cynical lazy naive".split()
)

#: Nouns after a person word that make it a modifier of a thing ("a manager account").
THING_AFTER: frozenset[str] = frozenset(
    "account accounts role access license licence permission permissions login view mode"
    " portal app dashboard panel tool version settings code id number email name details"
    " resources rights error limit seat seats plan fee fees price pricing review readable"
    " verification check discount signature address profile interface level button widget"
    " window link page feature option icon form box".split()
)

#: Qualifiers that make an "assistant" or "agent" software ("virtual assistant", "ai agent").
SOFTWARE: frozenset[str] = frozenset(
    "virtual ai digital voice smart google automated auto bot chatbot personal".split()
)

#: Nouns for the bot itself: asking *not* to talk to one is a request for a person.
BOT_NOUNS: frozenset[str] = frozenset(
    "bot bots chatbot chatbots robot robots robo machine machines computer computers ai"
    " program algorithm automaton autoresponder automated recording".split()
)

# --- how one asks -----------------------------------------------------------------------------

#: Verbs of contact (base form and gerund only: "talked" or "spoke" report, they don't ask).
CONTACT_VERBS: dict[str, str] = {
    **{w: "talk" for w in ("talk", "talking", "tlk", "tak")},
    **{w: "speak" for w in ("speak", "speaking", "speek")},
    **{w: "chat" for w in ("chat", "chatting", "chating", "converse", "conversing")},
    **{w: "connect" for w in ("connect", "connecting", "conect")},
    **{w: "transfer" for w in ("transfer", "transferring", "transfering")},
    **{w: "contact" for w in ("contact", "contacting", "reach", "reaching")},
    **{w: "escalate" for w in ("escalate", "escalating")},
    **{w: "forward" for w in ("forward", "forwarding", "redirect", "route", "refer")},
    **{w: "hand" for w in ("hand", "handing", "pass", "passing", "put", "putting", "hook")},
    **{w: "switch" for w in ("switch", "switching", "take", "send", "bring", "loop")},
    **{w: "ask" for w in ("ask", "asking", "consult", "consulting", "message", "complain")},
    **{w: "see" for w in ("see", "seeing", "meet", "visit")},
    **{w: "call" for w in ("call", "calling", "phone", "phoning", "ring", "ringing")},
}

#: Passive participles that still ask after "be"/"get": "can I be transferred to an agent".
PASSIVE_CONTACT: dict[str, str] = {
    "transferred": "transfer",
    "transfered": "transfer",
    "connected": "connect",
    "put": "hand",
    "passed": "hand",
    "handed": "hand",
    "forwarded": "forward",
    "redirected": "forward",
    "routed": "forward",
    "escalated": "escalate",
}

#: What "escalate" may take as its object when no person is named: "escalate my case".
ESCALATE_OBJECTS: frozenset[str] = frozenset(
    "this it me my the case issue ticket complaint problem request query matter please now"
    " asap urgently".split()
)

#: Contact verbs that mean a telephone: they also set the call-back flag.
PHONE_VERBS: frozenset[str] = frozenset({"call"})

#: Verbs that want something: "I want a human", "give me an agent", "request a rep".
DESIRE_VERBS: frozenset[str] = frozenset(
    "want need needs like love prefer request requesting demand require wish give get find"
    " getting finding gimme have rather insist".split()
)

#: Words allowed between a verb and the person it reaches ("put me through to a live agent").
GLUE: frozenset[str] = frozenset(
    "to with me us a an the some any one of your ur yours this that over through in touch back"
    " directly now right away please just actually really quickly immediately asap again"
    " another other conversation chat call case help assistance support from for by via on"
    " speak talk or and up connected someone somebody anyone anybody who can could might"
    " may able possibly kind nice my out have word quick".split()
)

#: Things a call can be asked with: "request a callback", "schedule a call".
CALL_NOUNS: frozenset[str] = frozenset({"call", "callback", "ring", "phonecall"})
CALL_ARRANGERS: frozenset[str] = frozenset(
    "want need like request schedule arrange book get give expect expecting waiting wait"
    " receive have organise organize setup set".split()
)

#: Whole-message requests that need no person noun: "handoff", "get in touch".
REQUEST_WORDS: frozenset[str] = frozenset({"handoff", "escalate", "callback"})

# --- what a request is not --------------------------------------------------------------------

#: Verbs that report someone else's instruction: "I was told to contact support".
REPORTING: frozenset[str] = frozenset(
    "told said asked advised suggested recommended instructed says tells".split()
)

#: Negators; "can not" (inability) is not one: "I can't reach an agent" still asks.
NEGATORS: frozenset[str] = frozenset({"not", "no", "never", "without", "insteadof", "ratherthan"})

#: Words a negation reaches across before the verb: "do not *want to* talk to a bot".
NEGATION_PASS: frozenset[str] = frozenset(
    "want wanted need wish like to have going do does did be will would really even ever any"
    " a an the me us let try trying plan intend mean care more".split()
)

#: Subject + copula pairs that ask what the bot is: "are you a human?", "is this a person".
NATURE_OPENERS: frozenset[tuple[str, str]] = frozenset(
    {
        ("are", "you"),
        ("you", "are"),
        ("were", "you"),
        ("is", "this"),
        ("this", "is"),
        ("is", "it"),
        ("it", "is"),
        ("is", "that"),
        ("that", "is"),
        ("was", "that"),
        ("am", "i"),
        ("i", "am"),
        ("you", "sound"),
        ("you", "seem"),
        ("you", "look"),
        ("sound", "like"),
        ("seem", "like"),
        ("pretend", "to"),
        ("being", "a"),
    }
)

#: Words that may sit between such an opener and its noun ("are you *really a* human").
NATURE_GLUE: frozenset[str] = frozenset(
    "a an the really actually real live just even not only still also or and like talking"
    " speaking chatting to with some kind of human being".split()
)

#: Auxiliaries before a gerund that make it a report: "I *was* talking to an agent".
PROGRESSIVE_AUX: frozenset[str] = frozenset({"am", "is", "are", "was", "were", "been"})

#: Modal questions about necessity: "do I need to talk to an agent to cancel?".
NECESSITY_OPENERS: frozenset[str] = frozenset({"do", "does", "will", "would", "must", "should"})

#: Filler that may surround a bare person noun in a whole-message request ("human please").
FILLERS: frozenset[str] = frozenset(
    "please pls plz now asap i a an the need want hi hello hey ok okay yes yeah urgently"
    " immediately quickly here there available online required needed to talk speak chat"
    " answer help assist me with can you get give some just only".split()
)

#: Real words close to a lexicon word: never "corrected" into it by fuzzy matching.
NOT_TYPOS: frozenset[str] = frozenset(
    "humane humanity humor humid personal personally persona version parson prison reason"
    " agency agenda agents urgent argent manage managed manages manger stuff stiff spoke"
    " spoken steak sneak spear speck talked talks taking walking stalking chats chatted"
    " charting contacts contacted contract connected connects connection transferred"
    " transfered transfers forwarded escalated assist assisted assists assistance operate"
    " operated operation execute executed advice advise advised associated special specialty"
    " supervise supervised employer employed customers services serviced supported"
    " supports teach peach beach reaches someones anyones noone honest".split()
)

#: Tokens that may be glued to a following lexicon word by a missing space ("tosomebody").
SPLIT_PREFIXES: tuple[str, ...] = ("with", "the", "an", "to", "me", "my", "a", "u", "i")
