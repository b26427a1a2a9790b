"""Thumbs up/down on bot answers: stored on the message, replaced by a second rating, shown in
history, and refused with our error body everywhere else."""

from __future__ import annotations

import re
import uuid

from tests.client import STAFF

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _answered(api, chat, question: str = "How long do I have to return an item?") -> dict:  # type: ignore[no-untyped-def]
    resp = api.send(chat, question, wait=20)
    assert resp.status_code == 200, resp.text
    messages = api.history(chat)["messages"]
    return {m["role"]: m for m in messages}


def _rate(api, chat, message_id: str, headers: dict | None = None, **body):  # type: ignore[no-untyped-def]
    return api.http.post(
        f"/api/chat/sessions/{chat['session_id']}/messages/{message_id}/feedback",
        json=body,
        headers=api.auth(chat) if headers is None else headers,
    )


def test_rating_is_stored_replaced_and_shown_in_history(api, chat):
    turn = _answered(api, chat)
    answer, question = turn["assistant"], turn["user"]
    assert answer["feedback"] is None and question["feedback"] is None

    first = _rate(api, chat, answer["id"], rating="up")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["message_id"] == answer["id"] and body["session_id"] == chat["session_id"]
    assert body["rating"] == "up" and body["reason"] is None and STAMP.match(body["at"])

    second = _rate(api, chat, answer["id"], rating="down", reason="  Didn't mention Norway.  ")
    assert second.status_code == 200, second.text
    assert second.json()["rating"] == "down"
    assert second.json()["reason"] == "Didn't mention Norway."

    history = {m["id"]: m for m in api.history(chat)["messages"]}
    stored = history[answer["id"]]["feedback"]
    assert stored == {"rating": "down", "reason": "Didn't mention Norway.", "at": stored["at"]}
    assert STAMP.match(stored["at"]) and stored["at"] >= body["at"]
    assert history[question["id"]]["feedback"] is None

    # Staff reading the conversation see the same verdict.
    staff_view = api.http.get(
        f"/api/chat/sessions/{chat['session_id']}/messages", headers=STAFF
    ).json()
    assert {m["id"]: m["feedback"] for m in staff_view["messages"]}[answer["id"]] == stored


def test_only_the_customer_rates_only_bot_answers_of_their_session(api, chat):
    turn = _answered(api, chat)
    answer = turn["assistant"]
    other = api.create_session()
    other_answer = _answered(api, other, "Do you ship to Norway?")["assistant"]

    def code(resp) -> tuple[int, str]:  # type: ignore[no-untyped-def]
        body = resp.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
        return resp.status_code, body["error"]["code"]

    assert code(_rate(api, chat, turn["user"]["id"], rating="up")) == (409, "not_a_bot_answer")
    assert code(_rate(api, chat, other_answer["id"], rating="up")) == (404, "unknown_message")
    assert code(_rate(api, chat, str(uuid.uuid4()), rating="up")) == (404, "unknown_message")
    assert code(_rate(api, chat, "undefined", rating="up")) == (400, "malformed_message_id")
    assert code(_rate(api, chat, answer["id"], headers=api.auth(other), rating="up"))[0] == 403
    assert code(_rate(api, chat, answer["id"], headers=STAFF, rating="up")) == (
        403,
        "customer_only",
    )
    assert code(_rate(api, chat, answer["id"], headers={}, rating="up"))[0] == 401
    bad = _rate(api, chat, answer["id"], rating="meh")
    assert code(bad)[0] == 422 and "rating" in bad.json()["error"]["details"]["json"]
    long = _rate(api, chat, answer["id"], rating="down", reason="x" * 501)
    assert code(long)[0] == 422 and "reason" in long.json()["error"]["details"]["json"]
    assert code(_rate(api, chat, answer["id"]))[0] == 422  # no rating at all
    # None of the refusals left a mark.
    history = {m["id"]: m for m in api.history(chat)["messages"]}
    assert history[answer["id"]]["feedback"] is None
    assert _rate(api, chat, answer["id"], rating="down", reason="x" * 500).status_code == 200


def test_migration_0005_goes_down_and_up_again():
    """Batch mode on SQLite, plain ALTER on PostgreSQL: both directions on a fresh database."""
    import os

    import sqlalchemy as sa
    from alembic import command

    from models.migrate import alembic_config, upgrade
    from tests.conftest import database_url, drop_postgres, recreate_postgres

    url = database_url("_mig0005")
    pg = bool(os.environ.get("TEST_DATABASE_URL"))
    if pg:
        recreate_postgres(url)
    try:
        upgrade(url)
        command.downgrade(alembic_config(url), "0004")
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("messages")}
        assert "feedback_rating" not in columns and "escalation" in columns
        upgrade(url)
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("messages")}
        engine.dispose()
        assert {"feedback_rating", "feedback_reason", "feedback_at"} <= columns
    finally:
        if pg:
            drop_postgres(url)
