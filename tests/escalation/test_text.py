"""Message tokens for the escalation checks: memoised per text, handed out as fresh lists."""

from __future__ import annotations

from worker.escalation.text import Token, _tokens, tokens


def test_memoised_tokens_are_the_uncached_ones_in_a_fresh_list() -> None:
    """The four checks before an answer read one message's tokens from the memo; what each
    gets equals a tokenisation done afresh, and changing one caller's list changes no other's."""
    text = "Id like to talk to a REAL person!! my pakage never arived; this is urgent"
    fresh = list(_tokens.__wrapped__(text))
    first = tokens(text)
    assert first == fresh
    assert any(t.word == "would" for t in first)  # "id like" read as "I would like"
    first.clear()
    first.append(Token("changed", "changed"))
    assert tokens(text) == fresh
    assert tokens(text) is not tokens(text)
