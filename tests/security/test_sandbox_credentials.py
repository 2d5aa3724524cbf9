"""A function in a namespace-isolated sandbox (the best level ``auto`` picks) reaches
the platform only through the API, signed with its execution role: it may do what the
role allows, and nothing else.

Needs the namespace level (CI has it: root); elsewhere skipped with ``faasbox doctor``'s
reason, never under CI (``CI`` set).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from tests.conftest import write_function
from tests.e2e.conftest import Server, start_server, stop_server

from faasbox.errors import ObjectNotFoundError
from faasbox.runtime.node import unavailable

WHY = unavailable("namespace")
pytestmark = pytest.mark.skipif(
    WHY is not None and not os.environ.get("CI"),
    reason=f"the namespace level is not available on this host: {WHY}",
)

WORKER = """
import os
from faasbox.errors import FaasboxError
from faasbox.handlers import objects

def handler(event, context):
    store = objects()
    out = {"isolation": os.environ["FAASBOX_ISOLATION"], "store": type(store).__name__,
           "home_visible": [name for name in ("state.db", "master.key", "credentials",
                                              "audit.log")
                            if os.path.exists(os.path.join(event["home"], name))]}
    info = store.put("mine", "in/a.txt", b"hello", content_type="text/plain",
                     metadata={"by": "worker"})
    got_info, data = store.get("mine", "in/a.txt")
    out["get"] = [data.decode(), got_info.etag == info.etag, got_info.metadata]
    out["range"] = store.get("mine", "in/a.txt", byte_range=(1, 3))[1].decode()
    out["head"] = store.head("mine", "in/a.txt").size
    store.copy("mine", "in/a.txt", "mine", "in/b.txt")
    out["list"] = [o.key for o in store.list("mine", prefix="in/").contents]
    store.delete("mine", "in/b.txt")
    for attempt in ("put", "get"):
        try:
            if attempt == "put":
                store.put("theirs", "x.txt", b"mine now")
            else:
                store.get("theirs", "secret.txt")
            out[attempt + "_theirs"] = "done"
        except FaasboxError as exc:
            out[attempt + "_theirs"] = f"{exc.code}: {exc.message}"
    return out
"""


@pytest.fixture(scope="module")
def auto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("auto") / "home",
                           env_extra={"FAASBOX_ISOLATION": "auto"})
    try:
        yield running
    finally:
        code = stop_server(running)
        assert code == 0, running.log()


def test_a_namespace_sandbox_uses_objects_over_the_api_within_its_role(
        auto: Server, tmp_path) -> None:
    client = auto.client()
    for bucket in ("mine", "theirs"):
        client.objects.create_bucket(bucket)
    client.objects.put("theirs", "secret.txt", b"not for you")
    policy = {"Statement": [{"Effect": "Allow", "Action": "objects:*",
                             "Resource": ["bucket:mine", "object:mine/*"]}]}
    auto.cli("policy", "put", "mine-only", json.dumps(policy))
    auto.cli("role", "create", "worker", "--policy", "mine-only")
    client.deploy("worker", write_function(tmp_path / "worker", WORKER),
                  handler="app.handler", role="worker", timeout_s=20)
    out = client.invoke("worker", {"home": str(auto.home)}).json()
    assert out["isolation"] in ("namespace", "cgroup")  # auto: the best this host has
    assert out["store"] == "ApiObjectStore" and out["home_visible"] == []
    assert out["get"] == ["hello", True, {"by": "worker"}]
    assert out["range"] == "ell" and out["head"] == 5
    assert out["list"] == ["in/a.txt", "in/b.txt"]
    assert out["put_theirs"].startswith("AccessDeniedException: role worker is not allowed "
                                        "to objects:PutObject on object:theirs/x.txt")
    assert out["get_theirs"].startswith("AccessDeniedException")
    assert client.objects.get("theirs", "secret.txt")[1] == b"not for you"
    with pytest.raises(ObjectNotFoundError):  # the refused put wrote nothing
        client.objects.head("theirs", "x.txt")
    assert client.objects.get("mine", "in/a.txt")[1] == b"hello"
    client.close()
