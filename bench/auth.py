"""faasbox authentication benchmark: what signing, verifying, authorizing and auditing
cost each API call, beside the same server's unauthenticated ``/healthz``.

    make bench            # runs it after the others
    .venv/bin/python bench/auth.py [--quick]

Figures, medians of 5 rounds: the client's SigV4 signature (stdlib signer, as the SDK
and sandboxes use), the server's check of it (botocore), a policy decision over a
principal with 20 statements, an audit line, their sum as a share of one signed HTTP
round trip (``GET /v1/whoami``: authenticated, authorized, audited, a route run in the
thread pool), with ``GET /healthz`` (public, async) on the same live ``faasbox up`` for
scale. Writes bench/results/auth.json.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import report

from faasbox import stdlib_sigv4
from faasbox.auth import policies, sigv4
from faasbox.auth.audit import AuditLog, entry
from faasbox.auth.credentials import from_home

URL = "http://127.0.0.1:8642/v1/buckets/results/objects/doc-1.json"


def per_call_us(action: object, n: int) -> float:
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            action()  # type: ignore[operator]
        rounds.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    n = 300 if parser.parse_args().quick else 2000
    secret = "s" * 40
    signed = {k.lower(): v for k, v in stdlib_sigv4.sign(
        "GET", URL, {"accept": "*/*"}, b"", "FBKAAAAAAAAAAAAAAAAAA", secret).items()}
    signed["host"] = "127.0.0.1:8642"
    statements = policies.parse({"Statement": [
        {"Effect": "Allow", "Action": f"queues:Op{chr(65 + i)}", "Resource": f"queue:q{i}-*"}
        for i in range(19)] + [{"Effect": "Allow", "Action": "objects:*",
                                "Resource": "object:results/*"}]})
    results = {
        "sign_us": per_call_us(lambda: stdlib_sigv4.sign(
            "GET", URL, {"accept": "*/*"}, b"", "FBKAAAAAAAAAAAAAAAAAA", secret), n),
        "verify_us": per_call_us(lambda: sigv4.verify(
            "GET", URL, signed, None, lambda key: secret), n),
        "policy_decision_us": per_call_us(lambda: policies.allowed(
            statements, "objects:GetObject", "object:results/doc-1.json"), n),
    }
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-m", "faasbox.cli.main", "up", "--port", str(port), "--home",
             str(home)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "FAASBOX_ISOLATION": "process",
                 "FAASBOX_CREDENTIALS_FILE": str(Path(tmp) / "credentials")})
        try:
            deadline = time.monotonic() + 30
            while not (home / "credentials").exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("faasbox up did not start")
                time.sleep(0.05)
            key = from_home(home)
            conn = http.client.HTTPConnection("127.0.0.1", port)

            def get(path: str, sign: bool) -> None:
                headers = stdlib_sigv4.sign(
                    "GET", f"http://127.0.0.1:{port}{path}", {}, b"", key.key_id,
                    key.secret) if sign else {}
                conn.request("GET", path, headers=headers)
                answer = conn.getresponse()
                answer.read()
                assert answer.status == 200, answer.status

            for _ in range(200):  # warm up both paths
                get("/healthz", False)
                get("/v1/whoami", True)
            calls = n // 4
            results["healthz_round_trip_us"] = per_call_us(lambda: get("/healthz", False),
                                                           calls)
            results["signed_round_trip_us"] = per_call_us(lambda: get("/v1/whoami", True),
                                                          calls)
        finally:
            server.terminate()
            server.wait()
    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(Path(tmp) / "audit.log")
        line = entry(principal="key:FBKAAAAAAAAAAAAAAAAAA", key_id="FBKAAAAAAAAAAAAAAAAAA",
                     role=None, action="functions:Invoke", resource="function:hello",
                     outcome="allowed", status=200, method="POST",
                     path="/v1/functions/hello/invoke", source="127.0.0.1")
        results["audit_append_us"] = per_call_us(lambda: log.append(line), n)
        log.close()
    results["auth_work_us"] = sum(results[k] for k in (
        "sign_us", "verify_us", "policy_decision_us", "audit_append_us"))
    results["auth_share_of_signed_call"] = (results["auth_work_us"]
                                            / results["signed_round_trip_us"])
    for name, value in results.items():
        print(f"{name:28s} {value:10.3f}")
    report.write("auth", results, {"note": "no goal: the cost of authentication, shown"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
