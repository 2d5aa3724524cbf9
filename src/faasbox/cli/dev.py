"""``faasbox dev``: deploy a folder, redeploy it on every save, and show the logs."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from faasbox.cli import common
from faasbox.cli.functions import (
    EnvOpt,
    HandlerOpt,
    MemoryOpt,
    NameOpt,
    RequirementsOpt,
    TimeoutOpt,
    deploy_request,
)
from faasbox.cli.logs import LogFollower
from faasbox.errors import FaasboxError, InvalidParameterError

#: Changes are grouped until the folder is quiet this long (ms): saves land in < 1 s.
QUIET_MS = 50
MAX_GROUP_MS = 400


def dev(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The function's folder.")],
    name: NameOpt = None,
    handler: HandlerOpt = None,
    memory: MemoryOpt = None,
    timeout: TimeoutOpt = None,
    env: EnvOpt = None,
    requirements: RequirementsOpt = None,
) -> None:
    """Deploy PATH, redeploy $LATEST on every save and print each invocation's log."""
    import watchfiles

    if not path.is_dir():
        raise InvalidParameterError(f"{path}: not a folder")
    fn_name, kwargs = deploy_request(path, name, handler, memory, timeout, env, requirements)
    stop = threading.Event()
    with common.client(ctx) as client, common.client(ctx) as follow_client:
        follower = LogFollower(follow_client, fn_name)
        # Before the deploy: a call made right after it (before the follower starts) is
        # this session's and must be shown, not taken for an older one.
        follower.skip_existing()
        info = client.deploy(fn_name, path, **kwargs)
        common.say(
            f"Deployed {fn_name} (handler {info['handler']}). Watching {path}: "
            "save a file to redeploy, Ctrl-C to stop.",
            "green",
        )
        common.say(f"  faasbox invoke {fn_name} --payload '{{}}'", "dim")
        thread = threading.Thread(target=follower.run, args=(stop,), daemon=True,
                                  name="faasbox-dev-logs")
        thread.start()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # stop as on Ctrl-C
        try:
            for changes in watchfiles.watch(
                path, debounce=MAX_GROUP_MS, step=QUIET_MS, stop_event=stop
            ):
                started = time.monotonic()
                files = sorted({Path(p).name for _, p in changes})
                try:
                    client.deploy(fn_name, path, **kwargs)
                except FaasboxError as exc:
                    common.print_error(exc)
                    continue
                took_ms = (time.monotonic() - started) * 1000
                common.say(
                    f"Redeployed {fn_name} in {took_ms:.0f} ms ({', '.join(files)})", "green"
                )
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            thread.join(timeout=2)
    common.say("Stopped.")


def register(app: typer.Typer) -> None:
    app.command()(dev)
