"""Adversarial functions against the ``cgroup`` isolation level (``namespace`` plus a
memory, pids and CPU cgroup per sandbox): each is contained, reported, and the
platform keeps serving other functions meanwhile.

These need Linux namespaces and cgroup v1's memory, pids, cpu and cpuacct controllers
(or cgroup v2 with memory, pids and cpu delegated: ``cgroup_check.py`` here runs the
same attacks with the standard library alone, for a v2 host), which CI has (it runs as
root). Elsewhere the level cannot be built, and these tests
are skipped with the reason ``faasbox doctor`` gives; under CI (``CI`` set) they never
skip: a missing level is a failure there.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from tests.conftest import write_function
from tests.security.cgroup_check import ATTACKS

from faasbox.model import Status
from faasbox.runtime.limits import cpu_quota_us
from faasbox.runtime.node import unavailable

WHY = unavailable("cgroup")
pytestmark = pytest.mark.skipif(
    WHY is not None and not os.environ.get("CI"),
    reason=f"the cgroup level is not available on this host: {WHY}",
)



@pytest.fixture
def platform(make_platform):
    return make_platform(isolation="cgroup", max_processes=50)


def deploy(client, tmp_path: Path, name: str, **config) -> None:
    folder = write_function(tmp_path / name, ATTACKS)
    client.deploy(name, folder, handler="app.handler", **config)


def test_forks_stop_at_the_process_limit(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "forker")
    got = client.invoke("forker", {"do": "forks", "n": 500}).json()
    assert got["errno"] == 11  # EAGAIN: the pids cgroup is full
    assert 40 <= got["made"] < 50  # max_processes=50, the sandbox itself included
    assert platform.node.stats()["isolation"] == "cgroup"


def test_a_fork_bomb_is_contained_killed_at_its_timeout_and_others_keep_running(
        platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "bomb", timeout_s=2)
    deploy(client, tmp_path, "bystander")
    assert client.invoke("bystander", {"do": "nothing"}).json() == "fine"
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(
        result=client.invoke("bomb", {"do": "bomb"})))
    thread.start()
    for _ in range(5):  # served while the bomb goes off next door
        assert client.invoke("bystander", {"do": "nothing"}).json() == "fine"
    thread.join(30)
    assert outcome["result"].json()["errorType"] == "Sandbox.Timedout"
    assert client.records("bomb")[0].status is Status.TIMEOUT
    assert [sb["function"] for sb in client.sandboxes()] == ["bystander"]


def test_cpu_is_in_proportion_to_memory(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "small", memory_mb=128)
    spun = client.invoke("small", {"do": "spin", "s": 0.6}).json()
    assert spun["cpu"] < 0.25 * spun["wall"]  # quota: 128/1769 of a CPU (~7 %)
    for memory_mb in (128, 1769, 3538):
        client.update_config("small", memory_mb=memory_mb)
        client.invoke("small", {"do": "nothing"})
        [sandbox] = [sb for sb in platform.node._live.values()]
        assert sandbox.limits.quota_us() == cpu_quota_us(memory_mb) == {
            128: 7235, 1769: 100_000, 3538: 200_000}[memory_mb]


def test_memory_past_the_limit_is_reported_and_others_are_unaffected(
        platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "glutton", memory_mb=128, timeout_s=20)
    deploy(client, tmp_path, "bystander")
    assert client.invoke("bystander", {"do": "nothing"}).json() == "fine"
    result = client.invoke("glutton", {"do": "eat"})
    assert result.json()["errorType"] == "Runtime.OutOfMemory"
    assert client.records("glutton")[0].status is Status.OOM
    assert client.invoke("bystander", {"do": "nothing"}).json() == "fine"


def test_each_calls_cpu_time_and_peak_memory_come_from_the_cgroup(platform, tmp_path) -> None:
    client = platform.client()
    deploy(client, tmp_path, "busy", memory_mb=1769)
    result = client.invoke("busy", {"do": "spin", "s": 0.3})
    spun = result.json()
    [record] = client.records("busy")
    assert record.cpu_time_ms is not None
    assert record.cpu_time_ms >= 0.8 * spun["cpu"] * 1000  # what the sandbox itself saw
    assert f"CPU Time: {record.cpu_time_ms:.2f} ms" in result.log
    assert record.max_memory_used_mb >= 1
    platform.metrics.collect_now()
    totals = client.metrics.function_summary("busy")["totals"]
    assert totals["CpuTime"]["average"] == pytest.approx(record.cpu_time_ms, rel=0.05)
    assert totals["MaxMemoryUsed"] == record.max_memory_used_mb
