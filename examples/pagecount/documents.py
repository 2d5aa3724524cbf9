"""Generate documents with a known number of pages, for the pagecount pipeline.

Text documents are pages separated by form feeds (``\\f``); PDFs have blank pages (made
with pypdf). ``generate`` is deterministic for a seed, so a test or a benchmark knows
the total number of pages it should get back.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

#: Share of documents that are PDFs (the rest are form-feed separated text).
PDF_SHARE = 0.2


def text_document(pages: int, rng: random.Random) -> bytes:
    words = ("lambda", "queue", "bucket", "sandbox", "record", "ledger", "cron", "alarm")
    body = []
    for page in range(pages):
        lines = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(rng.randint(3, 30))]
        body.append(f"page {page + 1}\n" + "\n".join(lines) + "\n")
    return "\f".join(body).encode()


def pdf_document(pages: int) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def generate(folder: Path, count: int, *, seed: int = 7, prefix: str = "doc") -> int:
    """Write ``count`` documents into ``folder``; returns their total number of pages."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    pdf_cache: dict[int, bytes] = {}
    total = 0
    for i in range(count):
        pages = rng.randint(1, 12)
        total += pages
        if rng.random() < PDF_SHARE:
            if pages not in pdf_cache:
                pdf_cache[pages] = pdf_document(pages)
            (folder / f"{prefix}-{i:05d}.pdf").write_bytes(pdf_cache[pages])
        else:
            (folder / f"{prefix}-{i:05d}.txt").write_bytes(text_document(pages, rng))
    return total

