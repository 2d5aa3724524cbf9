"""Queue semantics on a real SQLite file, with a clock the test steps by hand."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from faasbox.errors import (
    ConflictError,
    InvalidParameterError,
    InvalidReceiptHandleError,
    QueueNotFoundError,
)
from faasbox.events.queues import QueueService
from faasbox.stores.database import Database


class Clock:
    """Epoch seconds that move only when the test says."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def database(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'state.db'}")
    yield db
    db.close()


@pytest.fixture
def queues(database: Database, clock: Clock) -> QueueService:
    return QueueService(database, clock=clock)


def _counts(queues: QueueService, name: str) -> tuple[int, int, int]:
    c = queues.counts(name)
    return c["visible"], c["in_flight"], c["delayed"]


def test_create_has_sqs_defaults_and_is_idempotent(queues: QueueService) -> None:
    info = queues.create("jobs")
    assert (info["visibility_timeout_s"], info["retention_s"], info["delay_s"],
            info["max_message_bytes"], info["receive_wait_s"]) == (30, 4 * 86400, 0,
                                                                   256 * 1024, 0)
    assert info["dead_letter_queue"] is None and info["max_receive_count"] is None
    assert queues.create("jobs") == info
    with pytest.raises(ConflictError, match="other attributes"):
        queues.create("jobs", visibility_timeout_s=5)
    assert [q["name"] for q in queues.list()] == ["jobs"]


@pytest.mark.parametrize(("name", "attributes", "match"), [
    ("bad name", {}, "invalid queue name"),
    ("x" * 81, {}, "invalid queue name"),
    ("q", {"visibility_timeout_s": -1}, "visibility_timeout_s"),
    ("q", {"visibility_timeout_s": 43201}, "visibility_timeout_s"),
    ("q", {"retention_s": 59}, "retention_s"),
    ("q", {"delay_s": 901}, "delay_s"),
    ("q", {"max_message_bytes": 1023}, "max_message_bytes"),
    ("q", {"max_message_bytes": 256 * 1024 + 1}, "max_message_bytes"),
    ("q", {"receive_wait_s": 21}, "receive_wait_s"),
    ("q", {"delay_s": "5"}, "delay_s"),
    ("q", {"delay_s": True}, "delay_s"),
    ("q", {"dead_letter_queue": "dlq"}, "both"),
    ("q", {"max_receive_count": 3}, "both"),
    ("q", {"dead_letter_queue": "dlq", "max_receive_count": 0}, "max_receive_count"),
    ("q", {"dead_letter_queue": "q", "max_receive_count": 1}, "its own"),
])
def test_bad_names_and_attributes_change_nothing(
    queues: QueueService, name: str, attributes: dict, match: str
) -> None:
    queues.create("dlq")
    with pytest.raises(InvalidParameterError, match=match):
        queues.create(name, **attributes)
    assert [q["name"] for q in queues.list()] == ["dlq"]


def test_missing_dead_letter_queue_and_unknown_attributes(queues: QueueService) -> None:
    with pytest.raises(QueueNotFoundError, match="Queue not found: nope"):
        queues.create("q", dead_letter_queue="nope", max_receive_count=2)
    queues.create("q", visibility_timeout_s=7)
    with pytest.raises(InvalidParameterError, match="unknown queue attributes"):
        queues.set_attributes("q", visibility=3)
    with pytest.raises(InvalidParameterError, match="visibility_timeout_s"):
        queues.set_attributes("q", visibility_timeout_s=99999)
    assert queues.get("q")["visibility_timeout_s"] == 7
    assert queues.set_attributes("q", visibility_timeout_s=9)["visibility_timeout_s"] == 9
    with pytest.raises(QueueNotFoundError):
        queues.get("missing")


def test_received_message_is_invisible_until_its_timeout(
    queues: QueueService, clock: Clock
) -> None:
    queues.create("q", visibility_timeout_s=10)
    sent = queues.send("q", "hello")
    first = queues.receive("q")
    assert [(m.message_id, m.body, m.md5_of_body) for m in first] == [
        (sent["message_id"], "hello", sent["md5_of_body"])]
    assert first[0].attributes["ApproximateReceiveCount"] == "1"
    assert queues.receive("q") == []
    assert _counts(queues, "q") == (0, 1, 0)
    clock.advance(10)
    again = queues.receive("q", visibility_timeout_s=60)
    assert again[0].attributes["ApproximateReceiveCount"] == "2"
    assert again[0].receipt_handle != first[0].receipt_handle
    # the first handle is stale now: nothing changes with it
    with pytest.raises(InvalidReceiptHandleError, match="no longer current"):
        queues.delete_message("q", first[0].receipt_handle)
    with pytest.raises(InvalidReceiptHandleError):
        queues.change_visibility("q", first[0].receipt_handle, 0)
    assert _counts(queues, "q") == (0, 1, 0)
    queues.delete_message("q", again[0].receipt_handle)
    assert _counts(queues, "q") == (0, 0, 0)
    with pytest.raises(InvalidReceiptHandleError):  # deleted: its handle is stale too
        queues.delete_message("q", again[0].receipt_handle)


def test_forged_and_garbled_handles_are_refused(queues: QueueService) -> None:
    queues.create("q")
    queues.create("other")
    queues.send("q", "x")
    handle = queues.receive("q")[0].receipt_handle
    flipped = handle[:-2] + ("A" if handle[-2] != "A" else "B") + handle[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(handle[-1])
    # the same bytes spelled with the last character's 2 spare bits set otherwise
    respelled = [handle[:-1] + alphabet[(last & ~3) | spare] for spare in range(4)
                 if (last & ~3) | spare != last]
    for bad in (flipped, "junk", "", handle + "A", "!" * 43, *respelled):
        with pytest.raises(InvalidReceiptHandleError):
            queues.delete_message("q", bad)
    with pytest.raises(InvalidReceiptHandleError, match="not issued by queue other"):
        queues.delete_message("other", handle)
    assert _counts(queues, "q") == (0, 1, 0)
    queues.delete_message("q", handle)


def test_handles_stay_valid_across_a_restart(database: Database, clock: Clock) -> None:
    before = QueueService(database, clock=clock)
    before.create("q")
    before.send("q", "x")
    handle = before.receive("q")[0].receipt_handle
    after = QueueService(database, clock=clock)
    after.delete_message("q", handle)
    assert _counts(after, "q") == (0, 0, 0)


def test_dead_letter_after_max_receive_count_and_redrive(
    queues: QueueService, clock: Clock
) -> None:
    queues.create("dlq")
    queues.create("q", visibility_timeout_s=5, dead_letter_queue="dlq", max_receive_count=2)
    queues.send("q", "poison")
    for count in ("1", "2"):
        assert queues.receive("q")[0].attributes["ApproximateReceiveCount"] == count
        clock.advance(5)
    assert queues.receive("q") == []  # the third receive moves it instead
    assert _counts(queues, "q") == (0, 0, 0)
    assert _counts(queues, "dlq") == (1, 0, 0)
    dead = queues.receive("dlq", visibility_timeout_s=0)
    assert dead[0].body == "poison"
    assert queues.redrive("dlq") == 1
    assert _counts(queues, "dlq") == (0, 0, 0)
    back = queues.receive("q")
    assert back[0].body == "poison" and back[0].attributes["ApproximateReceiveCount"] == "1"
    with pytest.raises(InvalidReceiptHandleError):  # the DLQ handle does not follow it
        queues.delete_message("dlq", dead[0].receipt_handle)
    with pytest.raises(ConflictError, match="dead-letter queue of q"):
        queues.delete("dlq")
    queues.set_attributes("q", dead_letter_queue=None)
    assert queues.get("q")["max_receive_count"] is None
    queues.delete("dlq")


def test_redrive_to_a_destination_and_missing_queues(queues: QueueService) -> None:
    queues.create("dlq")
    queues.create("elsewhere")
    queues.send("dlq", "sent directly")
    assert queues.redrive("dlq") == 0  # no source queue: stays
    assert queues.redrive("dlq", destination="elsewhere") == 1
    assert queues.receive("elsewhere")[0].body == "sent directly"
    with pytest.raises(QueueNotFoundError):
        queues.redrive("dlq", destination="nope")
    with pytest.raises(QueueNotFoundError):
        queues.redrive("nope")


def test_delay_hides_new_messages(queues: QueueService, clock: Clock) -> None:
    queues.create("q", delay_s=30, visibility_timeout_s=600)
    queues.send("q", "queue delay")
    queues.send("q", "own delay", delay_s=0)
    assert _counts(queues, "q") == (1, 0, 1)
    assert [m.body for m in queues.receive("q", max_messages=10)] == ["own delay"]
    clock.advance(30)
    assert [m.body for m in queues.receive("q", max_messages=10)] == ["queue delay"]
    with pytest.raises(InvalidParameterError, match="delay_s"):
        queues.send("q", "x", delay_s=901)


def test_retention_drops_old_messages(queues: QueueService, clock: Clock) -> None:
    queues.create("q", retention_s=60)
    queues.send("q", "old")
    clock.advance(30)
    queues.send("q", "young")
    assert queues.counts("q")["oldest_age_s"] == 30
    clock.advance(31)
    assert _counts(queues, "q") == (1, 0, 0)
    assert [m.body for m in queues.receive("q", max_messages=10)] == ["young"]
    clock.advance(60)
    assert queues.store.expire(clock()) == 1
    assert queues.counts("q") == {"visible": 0, "in_flight": 0, "delayed": 0,
                                  "oldest_age_s": 0}


def test_purge_and_delete_queue(queues: QueueService) -> None:
    queues.create("q")
    queues.send_many("q", ["a", "b", "c"])
    assert queues.purge("q") == 3
    assert queues.receive("q") == []
    queues.send("q", "d")
    queues.delete("q")
    with pytest.raises(QueueNotFoundError):
        queues.send("q", "e")
    queues.create("q")
    assert _counts(queues, "q") == (0, 0, 0)


def test_bodies_are_checked(queues: QueueService) -> None:
    queues.create("q", max_message_bytes=1024)
    for body, match in [("", "non-empty"), ("x" * 1025, "over queue q's max_message_bytes"),
                        ("é" * 513, "1026 bytes"), ("bad \x00 char", "U\\+0000"), (5, "string")]:
        with pytest.raises(InvalidParameterError, match=match):
            queues.send("q", body)  # type: ignore[arg-type]
    queues.send("q", "x" * 1024)
    with pytest.raises(InvalidParameterError, match="message attribute"):
        queues.send("q", "x", message_attributes={"k": {"DataType": "Blob", "StringValue": "v"}})
    assert _counts(queues, "q") == (1, 0, 0)


def test_bodies_sqs_allows_pass_and_the_others_are_refused_wherever_the_character_is(
        queues: QueueService) -> None:
    queues.create("q")
    allowed = ["tab\there", "lines\r\nend", "~ ascii !", "del \x7f is fine",
               "é ü \ud7ff \ue000 \ufffd", "astral \U0001f600"]
    for body in allowed:
        queues.send("q", body)
    assert sorted(m.body for m in queues.receive("q", max_messages=10)) == sorted(allowed)
    for body, code in [("\x1fx", "001F"), ("ok \ufffe", "FFFE"),
                       ("ok \ud800", "D800"), ("é \x0b", "000B")]:
        with pytest.raises(InvalidParameterError, match=f"U\\+{code}"):
            queues.send("q", body)


def test_message_ids_are_distinct_version_4_uuids(queues: QueueService) -> None:
    queues.create("q")
    ids = queues.send_many("q", ["m"] * 2000)
    assert len(set(ids)) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)


def test_message_attributes_round_trip(queues: QueueService) -> None:
    queues.create("q")
    attributes = {"kind": {"DataType": "String", "StringValue": "pdf"},
                  "pages": {"DataType": "Number", "StringValue": "12"}}
    queues.send("q", "doc", message_attributes=attributes)
    assert queues.receive("q")[0].message_attributes == attributes


def test_batches_fail_entry_by_entry(queues: QueueService) -> None:
    queues.create("q", max_message_bytes=1024)
    result = queues.send_batch("q", [
        {"id": "a", "body": "one"},
        {"id": "b", "body": ""},
        {"id": "c", "body": "x" * 2000},
        {"id": "d", "body": "two", "delay_s": 0},
    ])
    assert [item["id"] for item in result["successful"]] == ["a", "d"]
    assert [item["id"] for item in result["failed"]] == ["b", "c"]
    assert all(item["code"] == "InvalidParameterValueException" for item in result["failed"])
    for bad, match in [([], "1-10"), ([{"id": str(i), "body": "x"} for i in range(11)], "1-10"),
                       ([{"id": "a", "body": "x"}, {"id": "a", "body": "y"}], "distinct"),
                       ([{"id": "a b", "body": "x"}], "needs an id"),
                       ([{"id": "a", "body": "x", "colour": 1}], "unknown fields")]:
        with pytest.raises(InvalidParameterError, match=match):
            queues.send_batch("q", bad)
    assert _counts(queues, "q") == (2, 0, 0)
    got = queues.receive("q", max_messages=10)
    deleted = queues.delete_batch("q", [
        {"id": "x", "receipt_handle": got[0].receipt_handle},
        {"id": "y", "receipt_handle": "forged"},
        {"id": "z", "receipt_handle": got[1].receipt_handle},
    ])
    assert [item["id"] for item in deleted["successful"]] == ["x", "z"]
    assert [(item["id"], item["code"]) for item in deleted["failed"]] == [
        ("y", "ReceiptHandleIsInvalid")]
    assert _counts(queues, "q") == (0, 0, 0)


def test_a_batch_over_256_kb_in_all_is_refused_whole(
    queues: QueueService, database: Database, clock: Clock
) -> None:
    queues.create("q")
    half = 128 * 1024
    big = [{"id": "a", "body": "x" * 200_000}, {"id": "b", "body": "y" * 200_000}]
    with pytest.raises(InvalidParameterError,
                       match=r"batch is 400000 bytes in all .* over the 262144-byte limit"):
        queues.send_batch("q", big)
    # message attributes count too, as in a message's own size
    tagged = [{"id": "a", "body": "x" * half},
              {"id": "b", "body": "y" * (half - 10),
               "message_attributes": {"k": {"DataType": "String", "StringValue": "v" * 10}}}]
    with pytest.raises(InvalidParameterError, match="262151 bytes in all"):
        queues.send_batch("q", tagged)
    assert _counts(queues, "q") == (0, 0, 0)  # nothing sent
    exact = [{"id": "a", "body": "x" * half}, {"id": "b", "body": "y" * half}]
    assert len(queues.send_batch("q", exact)["successful"]) == 2
    # an operator who allows 1 MB messages can send one of them in a batch
    roomy = QueueService(database, clock=clock, message_bytes_limit=1024 * 1024)
    roomy.create("big", max_message_bytes=1024 * 1024)
    assert len(roomy.send_batch("big", [{"id": "a", "body": "z" * 400_000}])["successful"]) == 1


def test_receive_limits(queues: QueueService) -> None:
    queues.create("q")
    for kwargs in ({"max_messages": 0}, {"max_messages": 11}, {"wait_s": 21},
                   {"visibility_timeout_s": -1}):
        with pytest.raises(InvalidParameterError):
            queues.receive("q", **kwargs)
    with pytest.raises(InvalidParameterError):
        queues.receive_batch("q", 10_001)
    with pytest.raises(QueueNotFoundError):
        queues.receive("nope")


def test_bulk_methods_for_other_services(queues: QueueService, clock: Clock) -> None:
    queues.create("q")
    ids = queues.send_many("q", [f"m{i}" for i in range(2500)])
    assert len(set(ids)) == 2500
    with pytest.raises(InvalidParameterError, match=r"bodies\[1\]"):
        queues.send_many("q", ["fine", ""])
    assert _counts(queues, "q") == (2500, 0, 0)  # the bad batch sent nothing
    got = queues.receive_batch("q", 2000, visibility_timeout_s=60)
    assert len(got) == 2000 and len({m.message_id for m in got}) == 2000
    assert [m.body for m in got[:3]] == ["m0", "m1", "m2"]
    handles = [m.receipt_handle for m in got]
    assert queues.delete_handles("q", [*handles[:1500], "junk"]) == ["junk"]
    assert queues.delete_handles("q", handles[:2]) == handles[:2]  # already gone
    queues.release("q", [*handles[1500:1600], "junk"])
    assert _counts(queues, "q") == (600, 400, 0)
    queues.release("q", handles[1600:], visibility_timeout_s=5)
    clock.advance(5)
    assert queues.counts("q")["visible"] == 1000
    rest = queues.receive_batch("q", 10_000)
    assert len(rest) == 1000
    assert queues.delete_handles("q", [m.receipt_handle for m in rest]) == []
    assert _counts(queues, "q") == (0, 0, 0)


def test_subscribers_hear_of_new_visible_messages(queues: QueueService) -> None:
    heard: list[str] = []

    def broken(name: str) -> None:
        raise RuntimeError("a subscriber failing must not fail the send")

    queues.subscribe(broken)
    queues.subscribe(heard.append)
    queues.create("q")
    queues.send("q", "a")
    queues.send_batch("q", [{"id": "1", "body": "b"}])
    queues.send_many("q", ["c"])
    handle = queues.receive("q")[0].receipt_handle
    queues.change_visibility("q", handle, 0)
    assert heard == ["q"] * 4
    queues.send("q", "later", delay_s=5)  # not visible yet: no call
    assert heard == ["q"] * 4
