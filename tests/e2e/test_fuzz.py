"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis),
against a real ``faasbox up`` that holds a function, a queue and a bucket: no request
may get a 5xx or crash the server, and a refused request (4xx) changes nothing.

Two parts: generated cases for every operation, whose failing examples Hypothesis
keeps in ``tests/e2e/fuzz/examples`` (replayed first on the next run), and a seed
corpus of hand-picked hostile requests, ``tests/e2e/fuzz/seeds.json``, replayed every
run. Every request is signed with the server's admin key (so the fuzzing reaches the
routes behind authentication), but the seeds marked ``unsigned``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from schemathesis import GenerationMode
from tests.conftest import write_function
from tests.e2e.conftest import Server, start_server, stop_server

from faasbox import stdlib_sigv4
from faasbox.auth.credentials import Credentials

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent / "fuzz"
SEEDS = json.loads((HERE / "seeds.json").read_text())
#: Long polls are cut short: a generated ``wait_s`` of 20 s would only make the run slow.
MAX_WAIT = "0"


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("fuzz")
    running = start_server(root / "home", env_extra={"FAASBOX_KEEP_ALIVE_S": "5"})
    client = running.client()
    try:
        folder = write_function(root / "fn", "def handler(event, context):\n    return event\n")
        client.deploy("target", folder, handler="app.handler")
        client.queues.create("target")
        client.objects.create_bucket("target-bucket")
        client.objects.put("target-bucket", "doc.txt", b"hello")
        yield running
    finally:
        client.close()
        code = stop_server(running)
        assert code == 0, running.log()
        assert "Traceback" not in running.log(), running.log()


def state(server: Server) -> Any:
    """What a refused request must leave as it was."""
    with server.http() as http:
        functions = http.get("/v1/functions").json()
        queues = http.get("/v1/queues").json()
        buckets = http.get("/v1/buckets").json()
        objects = http.get("/v1/buckets/target-bucket/objects").json()
        triggers = http.get("/v1/triggers").json()
        schedules = http.get("/v1/schedules").json()
        access = [http.get(f"/v1/{kind}").json() for kind in ("keys", "policies", "roles")]
    return {
        "functions": sorted((f["function"], f["revision"]) for f in functions["functions"]),
        "queues": sorted((q["name"], q["visible"] + q["in_flight"] + q["delayed"])
                         for q in queues["queues"]),
        "buckets": buckets, "objects": objects, "triggers": triggers, "schedules": schedules,
        "access": access,
    }


class SignedRequests(requests.auth.AuthBase):
    """Signs each generated request (schemathesis sends them with requests), so that
    the fuzzing reaches the routes behind authentication."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        request.headers.update(stdlib_sigv4.sign(
            request.method or "GET", request.url or "", headers, bytes(body),
            self.credentials.key_id, self.credentials.secret))
        return request


def check(case: Any, server: Server) -> None:
    """One generated request: never a 5xx, never a 4xx labelled as the service's fault,
    and a refused change leaves the state as it was."""
    if case.query and "wait_s" in case.query:
        case.query["wait_s"] = MAX_WAIT
    mutating = case.method.upper() not in ("GET", "HEAD", "OPTIONS")
    before = state(server) if mutating else None
    response = case.call(base_url=server.url, timeout=30,
                         auth=SignedRequests(server.credentials))
    where = (case.method, case.formatted_path, response.status_code, response.text[:500])
    assert response.status_code < 500, where
    if 400 <= response.status_code < 500:
        assert response.headers.get("x-amzn-errortype") != "ServiceException", where
        if mutating:
            assert state(server) == before, where


def test_generated_requests_never_fail_the_server_and_refusals_change_nothing(
        fuzzed: Server) -> None:
    """Every operation of the schema, with data that fits it and data that does not
    (schemathesis' positive and negative modes), 12 examples each."""
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40  # the whole API, not a fragment of it
    database = DirectoryBasedExampleDatabase(str(HERE / "examples"))
    for operation in operations:
        cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                          operation.as_strategy(GenerationMode.NEGATIVE))

        @settings(max_examples=12, deadline=None, database=database, print_blob=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=cases)
        def fuzz(case: Any) -> None:
            check(case, fuzzed)

        # one database key per operation: failing examples are replayed where they failed
        fuzz._hypothesis_internal_add_digest = operation.label.encode()  # type: ignore[attr-defined]
        fuzz()


@pytest.mark.parametrize("seed", SEEDS, ids=[seed["why"] for seed in SEEDS])
def test_seed_corpus_of_hostile_requests(seed: dict[str, Any], fuzzed: Server) -> None:
    before = state(fuzzed)
    body = seed.get("body")
    if isinstance(body, dict) and "repeat" in body:  # big bodies are built, not stored
        content = (body["prefix"] + body["unit"] * body["repeat"] + body["suffix"]).encode()
    elif body is None:
        content = b""
    else:
        content = body.encode("utf-8", "surrogateescape")
    headers = {name: value * seed.get("header_repeat", 1)
               for name, value in seed.get("headers", {}).items()}
    with fuzzed.http() as http:
        if seed.get("unsigned"):
            http.auth = None
        response = http.request(seed["method"], seed["path"], content=content,
                                headers=headers)
    assert response.status_code < 500, response.text
    assert response.status_code == seed["status"], (response.status_code, response.text)
    assert response.headers.get("x-amzn-errortype") != "ServiceException", response.text
    assert state(fuzzed) == before
    # the server is still there and well
    assert httpx.get(f"{fuzzed.url}/healthz", timeout=10).status_code == 200
