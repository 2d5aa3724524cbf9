"""The function every spare sandbox imports and calls once while it waits (see
:func:`worker.rehearse`), so that a real cold start finds warm pages. Stdlib only."""

from __future__ import annotations

from typing import Any


def handler(event: Any, context: Any) -> dict[str, Any]:
    return {"event": event, "request_id": context.aws_request_id,
            "remaining_ms": context.get_remaining_time_in_millis()}
