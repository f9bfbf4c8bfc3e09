"""RuleBook.receive / reach: a rule change takes effect after its ``points_seq``, in stream order (alert_worker/rules.py)."""

from datetime import UTC, datetime

import msgspec

from alert_worker.rules import RuleBook
from telemetry_schemas.events import AlertRuleCreated, AlertRuleDeleted, AlertRuleEnabled, RuleEvent
from telemetry_schemas.rules import RuleSpec

AT = datetime(2026, 12, 5, tzinfo=UTC)
SPEC = msgspec.convert({"name": "hot", "metric_name": "temp", "condition": ">", "threshold_value": 90}, RuleSpec)


def created(points_seq: int | None) -> AlertRuleCreated:
    return AlertRuleCreated(rule_id="r1", rule=SPEC, at=AT, by="op", points_seq=points_seq)


def enabled(on: bool, points_seq: int | None) -> AlertRuleEnabled:
    return AlertRuleEnabled(rule_id="r1", enabled=on, at=AT, by="op", points_seq=points_seq)


def state(book: RuleBook) -> str:
    rule = book.rules.get("r1")
    return "absent" if rule is None else ("enabled" if rule.enabled else "disabled")


def test_a_change_waits_until_the_engine_has_evaluated_the_points_before_it() -> None:
    book = RuleBook()
    book.reach(10)
    book.receive(created(10), 1)  # made when POINTS ended at 10, which the engine has evaluated: in force at once
    assert state(book) == "enabled" and not book.waiting
    book.receive(enabled(False, 20), 2)  # made at 20, the engine is at 10: points 11-20 are still the enabled rule's
    assert state(book) == "enabled" and book.waiting_until() == 20
    assert book.reach(19) is False and state(book) == "enabled"
    assert book.reach(20) is True and state(book) == "disabled" and book.waiting_until() == 0


def test_changes_apply_in_stream_order_whatever_their_points_seq() -> None:
    book = RuleBook()
    events: list[RuleEvent] = [created(5), enabled(False, 30), enabled(True, 20), enabled(False, None)]
    for seq, event in enumerate(events, 1):
        book.receive(event, seq)
    assert state(book) == "absent" and len(book.waiting) == 4  # position 0: even the creation waits
    book.reach(5)
    assert state(book) == "enabled"
    # The enable made at 20 (a clock-skewed or racing writer) does not overtake the disable made at 30 before it,
    # and the event without points_seq waits behind them too.
    book.reach(25)
    assert state(book) == "enabled" and len(book.waiting) == 3
    book.reach(30)
    assert state(book) == "disabled" and not book.waiting  # all three, in order: the last one says disabled


def test_an_event_without_points_seq_applies_on_arrival_and_the_position_never_moves_back() -> None:
    book = RuleBook()
    book.receive(created(None), 1)  # an event written before points_seq existed
    assert state(book) == "enabled"
    book.reach(50)
    book.reach(7)  # a redelivered message: the position stays
    assert book.position == 50
    book.receive(AlertRuleDeleted(rule_id="r1", at=AT, by="op", points_seq=40), 2)
    assert state(book) == "absent" and "r1" in book.deleted


def test_changes_made_on_an_earlier_stream_are_released_in_order_and_the_position_stays() -> None:
    book = RuleBook()
    book.reach(100)
    book.receive(created(500), 1)  # made when POINTS (since deleted and created again) ended at 500
    book.receive(enabled(False, 120), 2)  # made on the new stream, which holds 130 messages so far
    assert book.release_beyond(1_000) is False and state(book) == "absent"  # the stream holds 500: nothing gone
    assert book.release_beyond(130) is True and state(book) == "enabled"  # 500 is past the stream's end: applied
    assert book.position == 100 and book.waiting_until() == 120  # the new stream's change keeps its meaning
    book.reach(120)
    assert state(book) == "disabled"
