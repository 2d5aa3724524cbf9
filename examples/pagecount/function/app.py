"""pagecount: count the pages of documents announced by S3 notifications on SQS.

Each SQS record's body is an S3 event; for each document it names, the function reads
it, counts its pages (PDFs with pypdf, text by form feeds), writes one JSON result per
document into the results bucket and adds the batch to a running summary. Safe to run
twice on the same message (at-least-once delivery): a result is written once per
document version, and the summary counts each document once.

Two ways in: a trigger on the queue hands it batches (``{"Records": [...]}``), or the
queue's backlog alarm invokes it (a CloudWatch alarm event) and it drains the queue
itself, ten messages at a time, until the queue is empty or its time is nearly up.
"""

from __future__ import annotations

import io
import json
import os
import urllib.parse
from typing import Any

from pypdf import PdfReader  # at init, as on Lambda: a pre-warmed sandbox has it loaded

from faasbox.errors import ObjectNotFoundError, PreconditionFailedError
from faasbox.handlers import objects, queues
from faasbox.stores.objects import ObjectStore, PutItem

RESULTS = os.environ.get("RESULTS_BUCKET", "results")
QUEUE = os.environ.get("PAGES_QUEUE", "pages")
SUMMARY_KEY = "_summary.json"
#: A drain stops receiving when less than this is left of the invocation's time.
DRAIN_RESERVE_MS = 3000


def count_pages(name: str, data: bytes) -> int:
    """Pages of one document: PDFs by pypdf, anything else by its form feeds."""
    if name.endswith(".pdf"):
        return len(PdfReader(io.BytesIO(data)).pages)
    return data.count(b"\f") + 1


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("source") == "aws.cloudwatch":
        return drain(event, context)
    return handle_batch(event.get("Records", []))


def drain(alarm: dict[str, Any], context: Any) -> dict[str, Any]:
    """The backlog alarm went off: take the queue's messages ten at a time and handle
    them as a trigger's batch would, deleting those done."""
    if alarm["alarmData"]["state"]["value"] != "ALARM":
        return {"drained": 0}
    client = queues()
    drained = 0
    while context.get_remaining_time_in_millis() > DRAIN_RESERVE_MS:
        messages = client.receive(QUEUE, max_messages=10)
        if not messages:
            break
        records = [{"messageId": m["message_id"], "body": m["body"]} for m in messages]
        failed = {f["itemIdentifier"] for f in handle_batch(records)["batchItemFailures"]}
        done = [m["receipt_handle"] for m in messages if m["message_id"] not in failed]
        if done:
            client.delete_batch(QUEUE, done)
        drained += len(done)
    return {"drained": drained}


def handle_batch(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Handle SQS records; answers the ``batchItemFailures`` of those that failed."""
    store = objects()
    failures = []
    results: list[PutItem] = []
    counted: dict[str, int] = {}
    for record in records:
        try:
            for item, document, pages in process(store, json.loads(record["body"])):
                results.append(item)
                counted[document] = pages
        except Exception as exc:  # this message comes back; the others are done
            print(f"message {record.get('messageId')} failed: {exc!r}")
            failures.append({"itemIdentifier": record["messageId"]})
    write_results(store, results)
    if counted:
        add_to_summary(store, counted)
    return {"batchItemFailures": failures}


def process(store: ObjectStore, s3_event: dict[str, Any]
            ) -> list[tuple[PutItem, str, int]]:
    """The result of each document an S3 event names: (result, document, pages)."""
    done = []
    for record in s3_event.get("Records", []):
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        info, data = store.get(bucket, key)
        pages = count_pages(key, data)
        body = json.dumps({"bucket": bucket, "key": key, "etag": info.etag,
                           "size": info.size, "pages": pages}).encode()
        item = PutItem(key + ".json", body, "application/json", {"source-etag": info.etag})
        done.append((item, f"{bucket}/{key}", pages))
    return done


def write_results(store: ObjectStore, results: list[PutItem]) -> None:
    """Write each result once. The usual case is one commit for the whole batch; when
    a result is already there (this message was delivered before), each is written
    on its own, unless it is the same document version's."""
    if not results:
        return
    try:
        store.put_many(RESULTS, results, if_none_match="*")
    except PreconditionFailedError:
        for item in results:
            write_once(store, item)


def write_once(store: ObjectStore, item: PutItem) -> None:
    """Write the result of one document version, unless it is already there."""
    try:
        store.put(RESULTS, item.key, item.body, content_type=item.content_type,
                  metadata=item.metadata, if_none_match="*")
    except PreconditionFailedError:
        existing = store.head(RESULTS, item.key)
        if existing.metadata != item.metadata:  # a newer upload of the document
            store.put(RESULTS, item.key, item.body, content_type=item.content_type,
                      metadata=item.metadata, if_match=existing.etag)


def add_to_summary(store: ObjectStore, counted: dict[str, int]) -> None:
    """Merge this batch into the summary with a conditional write, retried on conflict
    (another sandbox wrote it meanwhile)."""
    while True:
        try:
            info, data = store.get(RESULTS, SUMMARY_KEY)
            summary, etag = json.loads(data), info.etag
        except ObjectNotFoundError:
            summary, etag = {"documents": 0, "pages": 0, "by_document": {}}, None
        by_document = summary["by_document"]
        by_document.update(counted)
        summary["documents"] = len(by_document)
        summary["pages"] = sum(by_document.values())
        body = json.dumps(summary).encode()
        # the totals in the metadata too: a HEAD tells a watcher how far it got
        totals = {"documents": str(summary["documents"]), "pages": str(summary["pages"])}
        try:
            if etag is None:
                store.put(RESULTS, SUMMARY_KEY, body, content_type="application/json",
                          metadata=totals, if_none_match="*")
            else:
                store.put(RESULTS, SUMMARY_KEY, body, content_type="application/json",
                          metadata=totals, if_match=etag)
            return
        except PreconditionFailedError:
            continue
