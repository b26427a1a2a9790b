"""Answer composition: which retrieved units get quoted, how they read, and how they are cited."""

from __future__ import annotations

import re
from dataclasses import asdict, fields
from pathlib import Path

from worker.agent.analysis import ANALYZER
from worker.agent.base import Passage, Source
from worker.agent.compose import compose
from worker.agent.questions import question_type, question_weights
from worker.agent.units import Unit, _Parser, build_units
from worker.ingest.chunking import chunk_text


def passage(
    doc: str, content: str, *, score: float = 0.9, section: str | None = None, position: int = 0
) -> Passage:
    return Passage(
        chunk_id=f"{doc}#{position}",
        document_id=doc,
        external_id=doc,
        title=doc.replace("-", " ").capitalize(),
        content=content,
        score=score,
        section=section,
        position=position,
    )


def answer(question: str, passages: list[Passage]) -> tuple[str, list]:
    weights = dict.fromkeys(ANALYZER.content_terms(question), 1.0)
    return compose(
        passages,
        question_weights(weights, question),
        question_type(question),
        question=question,
    )


def assert_citations_match(text: str, sources: list) -> None:
    cited = [int(n) for n in re.findall(r"\[(\d+)\]", text)]
    numbers = list(range(1, len(sources) + 1))
    assert sorted(set(cited)) == [s.index for s in sources] == numbers
    assert len(cited) == len(sources)  # one citation per article
    for source in sources:
        assert source.snippet and source.snippet.split()[0] in text


REFUNDS = passage(
    "refunds",
    "Here's what's refunded, what might be deducted, and how long a refund takes. "
    "Refunds go back to your original payment method. "
    "We refund card payments within 5 business days of receiving your return. "
    "A return label costs €4.95, deducted from your refund.",
)


def test_navigational_intro_loses_to_the_fact():
    text, sources = answer("how long does a refund take", [REFUNDS])
    assert "5 business days" in text and "Here's" not in text
    assert_citations_match(text, sources)


def test_question_type_picks_the_matching_fact():
    long_text, _ = answer("how long does a refund take", [REFUNDS])
    much_text, _ = answer("how much is the return label", [REFUNDS])
    assert "5 business days" in long_text and "€4.95" not in long_text
    assert "€4.95" in much_text


def test_section_heading_scopes_its_sentences():
    mini = passage(
        "factory-reset",
        "With the speaker on, hold Power and Volume + for 10 seconds.",
        section="Pulse Mini speaker",
        position=1,
    )
    bulb = passage(
        "factory-reset",
        "Switch the bulb off and on 5 times.",
        section="Lumo bulbs",
        position=2,
        score=0.85,
    )
    text, sources = answer("how do I factory reset the pulse mini", [mini, bulb])
    assert "Volume +" in text and "bulb" not in text
    assert sources[0].chunk_id == "factory-reset#1"


def test_steps_stay_whole_with_their_lead_in():
    steps = passage(
        "reset-password",
        "To reset your password:\n1. Open the sign-in page.\n2. Select Forgot password.\n"
        "3. Open the email. The link expires after 60 minutes.\n4. Choose a new password.",
        section="Reset your password",
    )
    how, _ = answer("how do I reset my password", [steps])
    assert how.startswith("To reset your password:\n1. Open the sign-in page.")
    assert "4. Choose a new password [1]." in how
    valid, _ = answer("how long is the reset link valid", [steps])
    assert "expires after 60 minutes" in valid and "1. Open" not in valid


def test_table_rows_read_as_sentences_with_their_headers():
    table = passage(
        "refund-timing",
        "| Payment method | Time after we issue the refund |\n|---|---|\n"
        "| Card | 3–5 business days |\n| PayPal | Within 24 hours |",
        section="How long until the money shows up",
    )
    text, _ = answer("how long does a paypal refund take", [table])
    assert text.startswith("PayPal — Time after we issue the refund: Within 24 hours")
    assert "Card" not in text


def test_chunk_overlap_is_quoted_once_and_in_reading_order():
    first = passage("delivery", "Orders ship the same day. Express arrives the next day.")
    second = passage(
        "delivery", "Express arrives the next day. Sunday delivery is not available.", position=1
    )
    units, slots = build_units([second, first], {"delivery": 0})
    texts = [u.text for u in units]
    assert texts.count("Express arrives the next day.") == 1
    assert [p.position for p in slots] == [0, 1]


def test_citations_match_sources_across_articles_and_chunks():
    passages = [
        passage("returns", "You can return most items within 30 days of delivery.", score=0.9),
        passage("returns", "Returns from abroad take 14 days to reach us.", score=0.8, position=3),
        passage("refunds", "Refunds for returns take 5 business days.", score=0.88),
        passage("labels", "A return label costs €4.95.", score=0.4),
    ]
    text, sources = answer("how many days do I have for a return", passages)
    assert_citations_match(text, sources)
    assert len({s.document_id for s in sources}) == len(sources)
    assert all(s.chunk_id.startswith(f"{s.document_id}#") for s in sources)
    assert "30 days" in text and "14 days" in text  # two chunks of one article, one citation
    assert [s.document_id for s in sources] == ["returns", "refunds"]


LOST_PHONE = passage(
    "two-factor",
    "1. On the code screen, select Use a backup code and enter one of your saved codes.\n"
    "2. Once you're in, go to Account > Security and set up 2FA again on your new phone.\n"
    "No backup codes left? Contact support. We verify your identity first. "
    "This takes up to 2 business days.",
    section="Lost or replaced your phone?",
)


def test_a_later_step_of_a_how_to_brings_its_whole_list_in_order():
    text, _ = answer("I lost my phone, what do I do to set up 2FA again", [LOST_PHONE])
    first, second = text.find("1. On the code screen"), text.find("2. Once you're in")
    assert -1 < first < second, text  # step 2 alone would start mid-thought


def test_a_context_sentence_that_leans_back_brings_its_predecessor():
    no_codes = passage(
        "two-factor",
        "No backup codes left? To protect your account, we verify your identity with a recent "
        "order number, the last four digits of your payment card and your delivery address "
        "before we remove two-factor authentication for you. This takes up to 2 business days. "
        "We never ask for your password.",
        section="No backup codes left?",
    )
    text, _ = answer("will you ask for my password", [no_codes])
    assert "We never ask for your password" in text
    assert not text.startswith("This takes"), text  # "This" needs what it refers to


def test_a_short_paragraph_is_quoted_from_its_start():
    battery = passage(
        "speaker",
        "A flashing red light means the battery is almost empty. Charge it with the USB-C "
        "cable for at least 30 minutes. A full charge takes about 3 hours.",
        section="Battery",
    )
    text, _ = answer("how long does a full charge of the speaker battery take", [battery])
    assert text.startswith("A flashing red light means the battery is almost empty.")
    assert "about 3 hours" in text


def test_a_lists_last_step_is_its_own_line_and_the_next_paragraph_is_prose():
    """The chunker gives the paragraph after a list its own line: every sentence of the last
    step belongs to the step, however many, and none of the next paragraph does."""
    router = passage(
        "router",
        "To reset the router:\n1. Leave it switched on.\n"
        "2. Hold the Reset pinhole for 10 seconds. The light blinks amber. Then let go.\n"
        "The router restarts with the name on its label. Set it up again in the app.",
        section="Reset",
    )
    units, _ = build_units([router], {"router": 0})
    steps = next(u for u in units if u.kind == "steps")
    in_steps = [u.text for u in units if u.parent == steps.uid]
    assert in_steps[-3:] == [
        "Hold the Reset pinhole for 10 seconds.",
        "The light blinks amber.",
        "Then let go.",
    ]
    prose = [u.text for u in units if u.kind == "sentence" and u.parent is None]
    assert prose[-2:] == [
        "The router restarts with the name on its label.",
        "Set it up again in the app.",
    ]
    text, _ = answer("how do i reset the router", [router])
    assert "\n2. Hold the Reset pinhole for 10 seconds. The light blinks amber" in text, text
    assert "amber. The router restarts" not in text and "let go. The router" not in text, text


def test_a_later_sentence_of_a_short_paragraph_joins_a_timed_answer_when_it_is_relevant():
    """After a duration only sentences that lean back on it or are about the question join: with
    real paragraphs, "your first payment is taken on day 15" sits in a short paragraph."""
    billing = passage(
        "plus-billing",
        "Plus renews automatically until you cancel.\n"
        "During a free trial, we email you 3 days before it ends. If you don't cancel, your "
        "first payment is taken on day 15. Annual members also get a reminder.\n"
        "A return label costs €4.95.",
        section="How billing works",
    )
    text, _ = answer("when is my first plus payment taken after the free trial", [billing])
    assert "day 15" in text, text
    assert "€4.95" not in text, text


def test_a_steps_list_is_as_relevant_as_the_line_that_introduces_it():
    """A lead-in ("If the box is crushed:") says what the steps are for; no step repeats it."""
    damaged = passage(
        "damaged-parcel",
        "If the box is crushed, torn or wet:\n1. Photograph the outer box and the label.\n"
        "2. Keep all the packaging.\n3. Report it within 14 days.",
        section="The box arrived damaged",
    )
    speaker = passage(
        "speaker-crackle",
        "If you hear crackling at any volume, contact support. Your speaker has a warranty.",
        score=0.85,
    )
    text, _ = answer("box came crushed, the speaker inside has a crack", [damaged, speaker])
    assert text.startswith("If the box is crushed, torn or wet:\n1. Photograph"), text


def _fresh_units(passages: list[Passage], docs: dict[str, int]) -> list[Unit]:
    """The units as one parser over all passages makes them (no per-passage cache)."""
    slots = sorted(passages, key=lambda p: (docs[p.document_id], p.position, p.chunk_id))
    parser = _Parser()
    for slot, p in enumerate(slots):
        heading = p.section if p.section != p.title else ""
        parser.parse(p.content or "", docs[p.document_id], slot, heading or "")
    seen: set[tuple[int, str]] = set()
    return [
        u
        for u in parser.units
        if (u.doc, u.key or u.text) not in seen and not seen.add((u.doc, u.key or u.text))
    ]


def _fields(unit: Unit) -> tuple:
    return tuple(getattr(unit, f.name) for f in fields(Unit))


def test_cached_passage_units_match_a_fresh_parse_of_the_sample_kb() -> None:
    """Each passage is parsed once per process and copied into place: for every article of
    the sample KB, its chunks in groups of three across two articles (lists, steps, tables and
    lead-ins included), the units are those a single parser over the same passages makes,
    asked twice (the second time from the cache)."""
    chunks: list[Passage] = []
    for path in sorted((Path(__file__).parents[2] / "data" / "sample_kb").rglob("*.md")):
        text = path.read_text()
        for position, (section, content) in enumerate(chunk_text(text, title=path.stem)):
            chunks.append(
                Passage(
                    chunk_id=f"{path.stem}#{position}",
                    document_id=path.stem,
                    external_id=path.stem,
                    title=path.stem,
                    content=content,
                    score=0.5,
                    section=section,
                    position=position,
                )
            )
    assert len(chunks) > 20
    kinds: set[str] = set()
    for start in range(0, len(chunks) - 2):
        group = chunks[start : start + 3]
        docs = {d: n for n, d in enumerate(dict.fromkeys(p.document_id for p in group))}
        expected = [_fields(u) for u in _fresh_units(group, docs)]
        for _ in range(2):
            units, _slots = build_units(list(reversed(group)), docs)
            assert [_fields(u) for u in units] == expected
        kinds.update(u.kind for u in units)
    assert {"sentence", "item", "steps"} <= kinds


def test_cached_passage_units_are_fresh_objects() -> None:
    """Scoring writes on units; one answer's scores never reach the next answer's units."""
    p = passage("returns", "Start a return:\n1. Open Orders.\n2. Pick the item.\nIt takes a day.")
    first, _ = build_units([p], {"returns": 0})
    for unit in first:
        unit.score, unit.lines[0] = 9.0, "changed"
    again, _ = build_units([p], {"returns": 0})
    assert all(u.score == 0.0 and u.lines[0] != "changed" for u in again)
    assert [u.kind for u in again] == [u.kind for u in first]


def test_plain_fields_are_what_asdict_gives() -> None:
    """Sources on a stored reply and cached passages: the shallow form is the same dict, in the
    same order, as the deep-copying one it replaced."""
    p = passage("returns", "Returns are free.", section="Costs", position=2)
    source = Source.from_passage(1, p)
    assert list(p.to_dict().items()) == list(asdict(p).items())
    assert list(source.to_dict().items()) == list(asdict(source).items())
    assert Passage(**p.to_dict()) == p


def test_support_from_a_short_paragraph_brings_the_sentence_it_opens_with():
    """A later sentence of a short paragraph quoted as support brings the paragraph's opening:
    "Changing the delivery country changes the VAT" alone drops the fact the paragraph states
    first (the new address must be in the same country)."""
    address = passage(
        "change-address",
        "Once shipped, we can't change the delivery address, but the carrier can deliver to a "
        "different address. The options depend on the carrier.\n"
        "The new one must be in the same country. Changing the delivery country changes the "
        "VAT, so cancel and order again.\n"
        "Your address book only changes future orders.",
        section="Changing the address",
    )
    text, _ = answer("can i change the delivery address to a different country", [address])
    assert "The new one must be in the same country. Changing the delivery country" in text, text


def test_between_equal_supports_the_one_needing_no_opening_is_quoted_first():
    """Two supports that score alike: the first sentence of its paragraph costs one sentence,
    a later one costs its opening too, so the first is taken when only one fits."""
    cards = passage(
        "gift-card-refunds",
        "Gift cards can't be bought with another gift card. Delivery of a gift card is free.\n"
        "If you return an item paid with a gift card, the amount goes back onto the card. "
        "If the gift card has expired by then, we issue a new gift card for the refund.\n"
        "An unused gift card can be cancelled for a full refund within 14 days.",
        section="Refunds",
    )
    text, _ = answer("refund a gift card i bought", [cards])
    assert "within 14 days" in text, text


def test_how_long_it_takes_is_answered_by_a_wait_not_by_how_long_something_stays_valid():
    """ "valid for 7 days" and "every 30 days" are durations, but not how long it takes."""
    export = passage(
        "data-export",
        "1. Sign in and go to Account > Privacy.\n2. Select Download my data.\n"
        "3. We email you a link to a ZIP file, usually within 48 hours.\n"
        "The file holds your profile, orders and returns in JSON. The download link is valid "
        "for 7 days, and you can request one data export every 30 days.",
        section="Download a copy of your data",
    )
    text, _ = answer("how long does it take to get my data export", [export])
    assert "within 48 hours" in text, text
    text, _ = answer("how long is the data export download link valid", [export])
    assert "valid for 7 days" in text, text


def test_a_pointer_at_these_steps_hands_on_to_the_articles_next_list():
    """ "These steps usually fix it" in the opening points at the procedure under the next
    heading, not at the sentence after it ("Your settings are saved...")."""
    intro = passage(
        "app-closes",
        "If the app closes or won't open at all, these steps usually fix it. Your rooms and "
        "settings are saved to your account, so you won't lose them.",
        position=0,
    )
    steps = passage(
        "app-closes",
        "1. Update the app from the App Store or Google Play.\n2. Restart your phone.\n"
        "3. Reinstall the app and sign in again.",
        section="Step by step",
        position=1,
        score=0.6,
    )
    text, _ = answer("app closes right after i open it", [intro, steps])
    assert "1. Update the app" in text and "3. Reinstall" in text, text


def test_a_fallback_procedure_follows_the_main_one_instead_of_replacing_it():
    """ "If the crashes continue, send a report:" is what to do when the fix fails; the
    article's earlier numbered list is the fix, and answers first."""
    fix = passage(
        "app-crashes",
        "1. Update the app.\n2. Force close and reopen the app.\n3. Restart your phone.",
        section="Step by step",
        position=1,
        score=0.7,
    )
    report = passage(
        "app-crashes",
        "If the crashes continue, send a report so our developers can see what went wrong:\n"
        "1. Open the app and go to Profile > Help > Send report.\n2. Add a short description "
        "of the crash and tap Send.",
        section="Send us a crash report",
        position=4,
        score=0.9,
    )
    text, _ = answer("the app crashes every time i open it", [report, fix])
    assert text.startswith("1. Update the app."), text
