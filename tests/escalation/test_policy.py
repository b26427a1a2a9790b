"""The escalation policy: what before_answer and after_answer decide, and why."""

from __future__ import annotations

import json

import pytest

from worker.escalation import (
    Decision,
    PriorTurn,
    after_answer,
    before_answer,
    negativity,
)
from worker.escalation.repeat import similarity


def _user(text: str) -> PriorTurn:
    return PriorTurn("user", text)


def _bot(text: str = "Here is what I found.", unsure: bool = False) -> PriorTurn:
    return PriorTurn("assistant", text, low_confidence=unsure)


def test_pressed_button_escalates_without_reading_the_text() -> None:
    decision = before_answer("what are your opening hours?", requested=True)
    assert decision.action == "escalate"
    assert decision.reasons == ["customer_choice"]


def test_explicit_request_escalates_with_evidence() -> None:
    decision = before_answer("can I speak to a representative please")
    assert decision.action == "escalate"
    assert decision.reasons == ["explicit_request"]
    assert decision.priority == "normal"
    assert "representative" in decision.signals["matched_phrase"]


def test_call_back_request_says_so() -> None:
    decision = before_answer("could someone ring me back this afternoon")
    assert decision.action == "escalate"
    assert {"explicit_request", "callback_request"} <= set(decision.reasons)


def test_angry_message_offers_a_person_at_high_priority() -> None:
    decision = before_answer("This is a terrible, awful experience and I hate it")
    assert decision.action == "offer"
    assert "negative_sentiment" in decision.reasons
    assert decision.priority == "high"
    assert decision.signals["sentiment_compound"] <= -0.5


def test_frustration_with_the_bot_counts_as_negative() -> None:
    decision = before_answer("you are not helping at all, this is pointless")
    assert decision.action == "offer"
    assert "negative_sentiment" in decision.reasons


def test_angry_explicit_request_escalates_at_high_priority() -> None:
    decision = before_answer("this is ridiculous, I want to talk to a manager")
    assert decision.action == "escalate"
    assert {"explicit_request", "negative_sentiment"} <= set(decision.reasons)
    assert decision.priority == "high"


def test_urgency_raises_the_priority_of_a_request() -> None:
    decision = before_answer("my card was stolen, connect me to an agent right now")
    assert decision.action == "escalate"
    assert decision.priority in {"high", "urgent"}
    assert decision.signals["urgency"]


def test_urgency_alone_decides_nothing() -> None:
    decision = before_answer("the delivery is urgent, when does it arrive?")
    assert decision.action == "none"
    assert decision.priority == "normal"


def test_ordinary_question_is_none() -> None:
    decision = before_answer("How long does a refund take?")
    assert decision.action == "none"
    assert decision.reasons == []


def test_repeated_question_offers_a_person() -> None:
    prior = [_user("How do I change my delivery address?"), _bot()]
    decision = before_answer("how can i change the delivery address??", prior=prior)
    assert decision.action == "offer"
    assert decision.reasons == ["repeated_question"]
    assert decision.signals["similarity"] >= 85


def test_a_different_question_is_not_a_repeat() -> None:
    prior = [_user("How do I change my delivery address?"), _bot()]
    assert before_answer("Do you ship to Norway?", prior=prior).action == "none"


@pytest.mark.parametrize("text", ["ok", "thanks", "yes", "hi"])
def test_short_courtesy_is_never_a_repeat(text: str) -> None:
    prior = [_user(text), _bot()]
    assert before_answer(text, prior=prior).action == "none"


def test_short_texts_repeat_only_when_identical() -> None:
    assert similarity("refund status", "refund status?") == 100.0
    assert similarity("refund", "refund status") == 0.0


def test_assistant_turns_are_not_compared_as_questions() -> None:
    prior = [_bot("How do I change my delivery address?")]
    decision = before_answer("How do I change my delivery address?", prior=prior)
    assert decision.action == "none"


def test_low_confidence_twice_offers_a_person() -> None:
    prior = [_user("can I pay with crypto"), _bot(unsure=True)]
    first = before_answer("do you take bitcoin", prior=prior)
    decision = after_answer(first, reply_low_confidence=True, prior=prior)
    assert decision.action == "offer"
    assert "low_confidence_twice" in decision.reasons


def test_single_low_confidence_is_none() -> None:
    prior = [_user("hello"), _bot(unsure=False)]
    first = before_answer("do you take bitcoin", prior=prior)
    decision = after_answer(first, reply_low_confidence=True, prior=prior)
    assert decision.action == "none"
    assert decision.reasons == []


def test_confident_reply_after_an_unsure_one_is_none() -> None:
    prior = [_bot(unsure=True)]
    decision = after_answer(before_answer("thanks"), reply_low_confidence=False, prior=prior)
    assert decision.action == "none"


def test_only_the_previous_assistant_turn_counts() -> None:
    prior = [_bot(unsure=True), _user("and shipping?"), _bot(unsure=False)]
    decision = after_answer(before_answer("and returns?"), reply_low_confidence=True, prior=prior)
    assert decision.action == "none"


def test_after_answer_never_downgrades_an_escalation() -> None:
    escalated = before_answer("put me through to a human")
    for low, prior in [(False, []), (True, []), (True, [_bot(unsure=True)])]:
        decision = after_answer(escalated, reply_low_confidence=low, prior=prior)
        assert decision.action == "escalate"
        assert decision.reasons[0] == "explicit_request"
        assert decision.priority == escalated.priority


def test_after_answer_keeps_an_offer_and_adds_its_reason() -> None:
    offered = before_answer("this is useless and a waste of my time")
    decision = after_answer(offered, reply_low_confidence=True, prior=[_bot(unsure=True)])
    assert decision.action == "offer"
    assert decision.reasons == ["negative_sentiment", "low_confidence_twice"]
    assert decision.priority == "high"


def test_after_answer_does_not_mutate_its_input() -> None:
    first = before_answer("do you take bitcoin")
    after_answer(first, reply_low_confidence=True, prior=[_bot(unsure=True)])
    assert first.action == "none" and first.reasons == []


def test_decision_to_dict_is_json_serialisable() -> None:
    prior = [_user("How do I change my delivery address?"), _bot(unsure=True)]
    decision = before_answer("how do I change my delivery address, this is useless", prior=prior)
    decision = after_answer(decision, reply_low_confidence=True, prior=prior)
    data = json.loads(json.dumps(decision.to_dict()))
    assert data["action"] == "offer"
    assert set(data) == {"action", "reasons", "priority", "signals"}
    assert isinstance(data["signals"]["sentiment_compound"], float)


def test_decision_defaults() -> None:
    decision = Decision("none", [])
    assert decision.priority == "normal" and decision.signals == {}
    assert decision.to_dict() == {
        "action": "none",
        "reasons": [],
        "priority": "normal",
        "signals": {},
    }


def test_negativity_is_vader_compound() -> None:
    assert negativity("I love this, thank you!") > 0.5
    assert negativity("this is awful and I hate it") < -0.5
    assert negativity("") == 0.0


def test_package_imports_no_services() -> None:
    """Pure functions: the package itself imports no database, Redis, Flask or haystack."""
    import ast
    from pathlib import Path

    allowed = {"__future__", "collections", "dataclasses", "functools", "re", "unicodedata"}
    allowed |= {"typing", "rapidfuzz", "vaderSentiment", "Stemmer", "worker"}
    package = Path(__file__).resolve().parents[2] / "worker" / "escalation"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, (path.name, name)
                assert not name.startswith("worker.") or name.startswith("worker.escalation")
