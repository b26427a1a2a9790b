"""Question forms: what kind of answer a question wants, and which sentences have that shape."""

from __future__ import annotations

import pytest

from worker.agent.analysis import ANALYZER
from worker.agent.questions import (
    Ask,
    answer_match,
    asks_wait,
    contradicts,
    form_words,
    is_navigational,
    lasting_only,
    question_type,
    question_weights,
)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How long does a refund take?", Ask.DURATION),
        ("how many days do i have to send it back", Ask.DURATION),
        ("when will my order arrive", Ask.DURATION),
        ("do gift cards expire", Ask.DURATION),
        ("how much is the membership", Ask.AMOUNT),
        ("whats the fee for express", Ask.AMOUNT),
        ("how many devices can I connect", Ask.COUNT),
        ("how do I reset my password", Ask.STEPS),
        ("how to pair headphones", Ask.STEPS),
        ("what happens if i dont pay the import charges", Ask.OTHER),
        ("so what happens when my card fee payment fails", Ask.OTHER),
        ("my headphones wont connect", Ask.STEPS),  # a reported problem wants a fix
        ("lost my phone, what do i do", Ask.STEPS),  # a course of action, not a yes or a no
        ("what should I do now?", Ask.STEPS),
        ("can I pay with PayPal?", Ask.YESNO),
        ("I opened the box, can I still send it back", Ask.YESNO),
        ("which android version does the app need", Ask.OTHER),
    ],
)
def test_question_type(question, expected):
    assert question_type(question) == expected


def test_when_in_a_clause_is_not_a_time_question():
    assert question_type("is the shipping refunded when I return everything") != Ask.DURATION


def test_answer_match_recognises_the_asked_for_shape():
    assert answer_match(Ask.DURATION, "Refunds arrive within 3–5 business days.") == 1.0
    assert answer_match(Ask.DURATION, "Orders placed before 14:00 ship today.") == 1.0
    assert answer_match(Ask.DURATION, "Labels cost €4.95.") == 0.0  # a price is not a clock time
    assert answer_match(Ask.DURATION, "You can return it as soon as it arrives.") == 0.5
    assert answer_match(Ask.AMOUNT, "Express delivery costs €9.95.") == 1.0
    assert answer_match(Ask.AMOUNT, "Returns are free for members.") == 0.5
    assert answer_match(Ask.AMOUNT, "Refunds go back to your card.") == 0.0
    assert answer_match(Ask.STEPS, "With the speaker on, hold Power for 10 seconds.") > 0
    assert answer_match(Ask.OTHER, "Anything at all, 5 days, €10.") == 0.0
    # a yes/no answer has no shape of its own: its evidence only nudges
    assert 0 < answer_match(Ask.YESNO, "Gift cards can't be used for memberships.") < 0.5


@pytest.mark.parametrize(
    "sentence",
    [
        "Here's what's refunded, what might be deducted, and how long it takes.",
        "This article explains the timings for returns and lost parcels.",
        'See "When will I get my refund?" for every payment method.',
        "If the app crashes, these steps usually fix it.",
    ],
)
def test_navigational_sentences(sentence):
    assert is_navigational(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "We refund within 5 business days of your return arriving.",
        "See you soon: the parcel is on its way.",
        "Card refunds take 3–5 business days.",
    ],
)
def test_answers_are_not_navigational(sentence):
    assert not is_navigational(sentence)


def test_contradicts_polarity_words():
    assert contradicts("how do I switch 2FA on", "You can switch 2FA off under Security.")
    assert not contradicts("how do I switch 2FA on", "Turn on 2FA under Security.")
    assert not contradicts("how do I turn it off", "Switch it off, then on again.")
    assert not contradicts("what is 2FA", "You can switch 2FA off.")


def test_question_weights_drop_form_words_and_add_answer_words():
    weights = {"mani": 3.0, "day": 1.0, "return": 2.0}
    assert form_words("how many days") == {"many"}
    assert "mani" not in question_weights(weights, "how many days to return it")
    priced = question_weights({"plus": 2.0}, "how much is plus")
    cost = ANALYZER.stem("cost")
    assert priced["plus"] == 2.0 and priced[cost] == pytest.approx(1.0)
    assert sum(1 for t in priced if t != "plus") == 1  # one entry for the cost/price/fee group


def test_a_wait_question_and_durations_that_are_no_wait():
    assert asks_wait("how long does it take to get my data export")
    assert asks_wait("how soon will my refund arrive")
    assert not asks_wait("how long is the reset link valid")
    assert not asks_wait("how long do i have to return an item")
    assert lasting_only("The download link is valid for 7 days.")
    assert lasting_only("The reset link expires after 60 minutes.")
    assert lasting_only("You can request one export every 30 days.")
    assert not lasting_only("We email you a link, usually within 48 hours.")
    assert not lasting_only("Refunds take 3–5 business days; the link is valid for 7 days.")
    assert not lasting_only("There is no time in this sentence.")
