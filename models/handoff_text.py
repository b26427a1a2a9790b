"""What a customer is told about people: honest about hours and whether anyone is online."""

from __future__ import annotations

from functools import lru_cache

from models.hours import SupportHours
from models.presence import agents_online
from models.settings import get_settings


@lru_cache(maxsize=4)
def _hours(text: str, zone: str) -> SupportHours:
    return SupportHours.parse(text, zone)


def availability() -> dict:
    """Can a person answer now: inside support hours, and how many agents have a console open."""
    s = get_settings()
    hours = _hours(s.support_hours, s.support_timezone)
    return {
        "in_hours": hours.open_at(),
        "agents_online": agents_online(),
        "hours": f"{hours.text} ({s.support_timezone})" if not hours.always else None,
    }


def waiting_notice(avail: dict) -> str:
    """The one message a customer gets when the conversation goes to the queue."""
    if not avail["in_hours"]:
        return (
            "I've passed this conversation to our support team, but they're away right now "
            f"(our hours: {avail['hours']}). Leave your email address and we'll reply there; "
            "everything you write here stays with your request."
        )
    if avail["agents_online"] == 0:
        return (
            "I've asked our support team to join, but nobody is online right now. Leave your "
            "email address and we'll reply there, or stay in this chat in case someone joins."
        )
    return (
        "I've asked a member of our support team to join. Please stay in this chat: they'll "
        "reply here and will see everything you write."
    )


def joined_notice(agent: str) -> str:
    """Who joined, by the name customers are shown."""
    return f"{agent} from support joined the chat."


def left_notice(agent: str, why: str) -> str:
    """What happens next after a person lets go of the conversation."""
    if why == "released":
        return f"{agent} had to step away; you're back in the queue for the next person."
    if why == "agent_away":
        return f"{agent} is no longer available; you're back in the queue for the next person."
    if why == "ended":
        return f"{agent} closed this conversation."
    return f"{agent} marked this as resolved. The assistant is back if you have more questions."
