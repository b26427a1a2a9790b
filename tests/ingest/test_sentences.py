"""Sentence splitting decides citation boundaries, so the tricky cases are pinned here."""

from __future__ import annotations

import time

import pytest

from worker.ingest.sentences import split_paragraphs, split_sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("   \n\n ", []),
        ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        (
            "Dr. Smith paid €4.99 for item No. 5 today. Then he left.",
            ["Dr. Smith paid €4.99 for item No. 5 today.", "Then he left."],
        ),
        (
            "Use a card, e.g. Visa, i.e. a credit card. Cash is fine too.",
            ["Use a card, e.g. Visa, i.e. a credit card.", "Cash is fine too."],
        ),
        (
            "Visit https://example.com/help.html?x=1.5 now. Mail help@example.co.uk for more.",
            ["Visit https://example.com/help.html?x=1.5 now.", "Mail help@example.co.uk for more."],
        ),
        ("Go to example.com. Then log in.", ["Go to example.com.", "Then log in."]),
        (
            "We ship to the U.S. Next week too. The U.S. team is big.",
            ["We ship to the U.S.", "Next week too.", "The U.S. team is big."],
        ),
        ("Can I cancel? No. You can't.", ["Can I cancel?", "No.", "You can't."]),
        ("See p. 12 and fig. 3 for more.", ["See p. 12 and fig. 3 for more."]),
        ("Wait 5 min. Then retry.", ["Wait 5 min.", "Then retry."]),
        ("Ask J. Smith or Prof. Jones. OK.", ["Ask J. Smith or Prof. Jones.", "OK."]),
        ("It costs approx. five euros. Fine.", ["It costs approx. five euros.", "Fine."]),
        ('He said "Stop." Then left.', ['He said "Stop."', "Then left."]),
        ("Wait... What? Really!", ["Wait...", "What?", "Really!"]),
        ("Version 2.3.1 is out. Update now.", ["Version 2.3.1 is out.", "Update now."]),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_line_breaks_end_list_items_and_headings() -> None:
    text = "# Refunds\nAsk within 30 days.\n- open the app\n- tap help\nSteps:\n1. Log in\n2. Pay"
    assert split_sentences(text) == [
        "# Refunds",
        "Ask within 30 days.",
        "- open the app",
        "- tap help",
        "Steps:",
        "1. Log in",
        "2. Pay",
    ]


def test_title_line_without_markup_is_its_own_sentence() -> None:
    assert split_sentences("Refund policy\nYou get a refund. Always.") == [
        "Refund policy",
        "You get a refund.",
        "Always.",
    ]


def test_soft_wrapped_lines_are_joined() -> None:
    text = "This sentence was wrapped\nacross two lines and a hyphen-\nated word. Next one."
    assert split_sentences(text) == [
        "This sentence was wrapped across two lines and a hyphen-ated word.",
        "Next one.",
    ]


def test_paragraph_break_ends_sentence_without_punctuation() -> None:
    assert split_sentences("first paragraph\n\nsecond paragraph") == [
        "first paragraph",
        "second paragraph",
    ]


def test_one_megabyte_is_fast() -> None:
    para = (
        "Dr. Smith paid €4.99 for item No. 5, e.g. the blue one. Visit https://example.com/a "
        "or mail help@example.co.uk! Is it working? Yes, i.e. it works.\n"
    )
    for text in (
        para * (1_000_000 // len(para)),
        para.replace("\n", " ") * (1_000_000 // len(para)),
    ):
        start = time.perf_counter()
        sentences = split_sentences(text)
        assert time.perf_counter() - start < 3.0
        assert len(sentences) > 20_000


def test_split_paragraphs_groups_sentences_as_a_reader_sees_them() -> None:
    text = (
        "Refunds take 5 days.\nThey go back to your card.\n\n"
        "Steps:\n1. Hold the button. Keep holding.\n- Wait.\n"
        "Then set it up again. It takes a minute."
    )
    assert split_paragraphs(text) == [
        ["Refunds take 5 days.", "They go back to your card."],  # a wrap at a sentence's end
        ["Steps:"],
        ["1. Hold the button.", "Keep holding."],
        ["- Wait."],
        ["Then set it up again.", "It takes a minute."],  # after a list: a paragraph of its own
    ]
    assert split_sentences(text) == [s for p in split_paragraphs(text) for s in p]
    assert split_paragraphs("  \n\n ") == []
