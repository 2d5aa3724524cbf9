"""Queues inside a real platform: long polling across threads, concurrent receivers,
the visibility and retention drivers on the real dispatcher."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from faasbox.api.queues import Message
from faasbox.platform import LocalClient


def _wait_for(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_long_poll_returns_the_message_sent_from_another_thread(client: LocalClient) -> None:
    client.queues.create("q")
    got: list[list[Message]] = []
    waiter = threading.Thread(target=lambda: got.append(client.queues.receive("q", wait_s=20)))
    waiter.start()
    time.sleep(0.2)  # most likely parked on the condition by now (either way it must work)
    client.queues.send("q", "wake up")
    waiter.join(timeout=20)
    assert not waiter.is_alive()
    assert [m.body for m in got[0]] == ["wake up"]


def test_long_poll_with_no_message_returns_empty(client: LocalClient) -> None:
    client.queues.create("q", receive_wait_s=1)
    assert client.queues.receive("q") == []  # the queue's own wait applies
    assert client.queues.receive("q", wait_s=1) == []


def test_a_receive_without_wait_s_long_polls_for_the_queues_receive_wait(
    client: LocalClient,
) -> None:
    client.queues.create("q", receive_wait_s=20)
    sender = threading.Timer(0.3, lambda: client.queues.send("q", "worth the wait"))
    sender.start()
    try:
        got = client.queues.receive("q")  # no wait_s: the queue's 20 s apply
    finally:
        sender.join()
    # a receive that did not wait would have found the queue empty
    assert [m.body for m in got] == ["worth the wait"]


def test_long_poll_gets_a_message_back_after_its_visibility_timeout(
    client: LocalClient,
) -> None:
    client.queues.create("q")
    client.queues.send("q", "retry me")
    first = client.queues.receive("q", visibility_timeout_s=1)
    again = client.queues.receive("q", wait_s=10)
    assert [m.body for m in again] == ["retry me"]
    assert again[0].attributes["ApproximateReceiveCount"] == "2"
    assert again[0].message_id == first[0].message_id


def test_concurrent_receivers_never_get_the_same_message(client: LocalClient) -> None:
    client.queues.create("q", visibility_timeout_s=300)
    client.platform.queues.send_many("q", [str(i) for i in range(400)])
    seen: list[str] = []
    lock = threading.Lock()

    def consume() -> None:
        while True:
            batch = client.queues.receive("q", max_messages=10)
            if not batch:
                return
            with lock:
                seen.extend(m.body for m in batch)

    workers = [threading.Thread(target=consume) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(seen, key=int) == [str(i) for i in range(400)]  # each exactly once


def test_subscribers_hear_when_a_visibility_timeout_ends(client: LocalClient) -> None:
    queues = client.platform.queues
    queues.create("q")
    queues.send("q", "x")
    received = queues.receive_batch("q", 10, visibility_timeout_s=1)
    assert len(received) == 1
    heard: list[str] = []
    queues.subscribe(heard.append)
    # the queues-visibility driver notices the timeout end on the dispatcher thread
    assert _wait_for(lambda: "q" in heard)
    assert [m.body for m in queues.receive_batch("q", 10)] == ["x"]


def test_delayed_message_wakes_a_long_poll(client: LocalClient) -> None:
    client.queues.create("q")
    client.queues.send("q", "soon", delay_s=1)
    assert client.queues.get("q")["delayed"] == 1
    assert [m.body for m in client.queues.receive("q", wait_s=10)] == ["soon"]


def test_close_ends_long_polls(make_platform) -> None:
    platform = make_platform()
    platform.queues.create("q")
    got: list[list[Message]] = []
    waiter = threading.Thread(target=lambda: got.append(platform.queues.receive("q",
                                                                                wait_s=20)))
    waiter.start()
    time.sleep(0.1)
    platform.close()
    waiter.join(timeout=20)
    assert not waiter.is_alive() and got == [[]]


def test_queues_survive_a_platform_restart(make_platform, tmp_path) -> None:
    home = tmp_path / "restart"
    first = make_platform(home=home)
    first.queues.create("q", visibility_timeout_s=120)
    first.queues.send("q", "durable")
    handle = first.queues.receive("q")[0].receipt_handle
    first.close()
    second = make_platform(home=home)
    assert second.queues.get("q")["in_flight"] == 1
    second.queues.delete_message("q", handle)
    assert second.queues.get("q")["in_flight"] == 0


def test_an_empty_long_poll_does_not_busy_loop(client: LocalClient) -> None:
    client.queues.create("q")
    statements: list[str] = []
    engine = client.platform.database.engine

    def count(conn, cursor, statement, *args) -> None:
        if "queue_messages" in statement:
            statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.queues.receive("q", wait_s=1) == []
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    # one claim before waiting, one look for the next due message, one claim at the end
    assert 1 <= len(statements) <= 6, statements
