"""A slow function: sleeps event['seconds'] (default 1), e.g. to watch concurrency,
throttling or a timeout (its timeout is 5 s)."""

import time


def handler(event, context):
    seconds = float((event or {}).get("seconds", 1))
    print(f"sleeping {seconds} s; {context.get_remaining_time_in_millis()} ms left")
    time.sleep(seconds)
    return {"slept_s": seconds, "remaining_ms": context.get_remaining_time_in_millis()}
