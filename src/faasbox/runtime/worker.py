"""The code inside a sandbox: sets the process up, imports the handler, serves calls.

Runs in a child forked by the zygote. Stdlib only: it never imports the faasbox package
or anything of the control plane. :func:`main` is the whole life of a sandbox:

1. ``setsid`` (the supervisor kills the whole process group), join the memory cgroup
   before anything is allocated, rlimits, private working dir and ``/tmp``, output to
   a file the supervisor reads, Lambda's environment and logging format;
2. init: import the handler module and resolve the function, answer ``ready`` with the
   Init Duration, or ``init_error`` with Lambda's error object, and end;
3. serve ``invoke`` requests one at a time, answering ``result`` frames whose body is
   the handler's result as JSON, or Lambda's error object.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import resource
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import protocol

_LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s"
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
           "WARNING": logging.WARNING, "ERROR": logging.ERROR, "FATAL": logging.CRITICAL,
           "CRITICAL": logging.CRITICAL}


class Fault(Exception):
    """An error of the runtime itself (not raised by user code), with Lambda's type."""

    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


class LambdaContext:
    """The ``context`` argument of a handler, with Lambda's attribute names."""

    def __init__(self, params: dict[str, Any], request_id: str, arn: str,
                 deadline_ms: int) -> None:
        self.function_name: str = params["function_name"]
        self.function_version: str = params["function_version"]
        self.invoked_function_arn = arn
        self.memory_limit_in_mb = int(params["memory_mb"])
        self.aws_request_id = request_id
        self.log_group_name: str = params["log_group_name"]
        self.log_stream_name: str = params["log_stream_name"]
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def __repr__(self) -> str:
        return (f"LambdaContext(function_name={self.function_name!r}, "
                f"aws_request_id={self.aws_request_id!r})")


class _RequestIdFilter(logging.Filter):
    """Fills ``%(aws_request_id)s`` of every record with the current call's id."""

    def __init__(self) -> None:
        super().__init__()
        self.request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def main(fd: int, params: dict[str, Any], stdlib_path: list[str]) -> None:
    """Become the sandbox described by ``params`` and serve until the socket closes."""
    os.setsid()
    if params.get("cgroup_join"):
        with open(params["cgroup_join"], "w") as f:  # first: later pages are charged
            f.write("0")  # "0" is the writer itself
    _set_limits(params)
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    os.set_inheritable(fd, False)
    _redirect_output(params["output"])
    os.environ.clear()
    os.environ.update(params["env"])
    time.tzset()
    _enter_work_dir(params["work_dir"], params["code_dir"])
    sys.path[:] = [p for p in (params["code_dir"], params.get("layer_dir")) if p]
    sys.path += stdlib_path
    sys.dont_write_bytecode = True  # code folders are read-only by convention
    request_ids = _setup_logging(params["env"].get("AWS_LAMBDA_LOG_LEVEL", ""))
    Runtime(sock, params, request_ids).run()


def _set_limits(params: dict[str, Any]) -> None:
    for which, value in ((resource.RLIMIT_NOFILE, params["max_open_files"]),
                         (resource.RLIMIT_NPROC, params["max_processes"]),
                         (resource.RLIMIT_CORE, 0)):
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))


def _redirect_output(path: str) -> None:
    """fd 1 and 2 append to the output file; prints reach it at once (no buffer)."""
    out = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", write_through=True)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _enter_work_dir(work_dir: str, code_dir: str) -> None:
    """A private cwd that still shows the code's files, as Lambda's cwd is the code."""
    try:
        for entry in os.scandir(code_dir):
            os.symlink(entry.path, os.path.join(work_dir, entry.name))
    except OSError:
        pass
    os.chdir(work_dir)


def _setup_logging(level: str) -> _RequestIdFilter:
    """The root logger as Lambda's Python runtime configures it."""
    request_ids = _RequestIdFilter()
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(_LOG_FORMAT, "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(request_ids)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if level.upper() in _LEVELS:
        root.setLevel(_LEVELS[level.upper()])
    return request_ids


def error_object(exc: BaseException) -> dict[str, Any]:
    """Lambda's ``{"errorMessage", "errorType", "stackTrace"}`` for an exception."""
    if isinstance(exc, Fault):
        return {"errorMessage": exc.message, "errorType": exc.error_type,
                "stackTrace": exc.trace}
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    return {"errorMessage": str(exc), "errorType": type(exc).__name__,
            "stackTrace": traceback.format_list(frames)}


def load_handler(handler: str) -> Callable[..., Any]:
    """Import ``pkg.module`` and return its function, or raise :class:`Fault`/user errors."""
    module_name, _, function_name = handler.rpartition(".")
    if not module_name:
        raise Fault("Runtime.MalformedHandlerName", f"Bad handler '{handler}'")
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise Fault("Runtime.BuiltInModuleConflict",
                    f"Cannot use built-in module {module_name} as a handler module")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise Fault("Runtime.ImportModuleError",
                    f"Unable to import module '{module_name}': {exc}") from exc
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {(exc.text or "").strip()}\n']
        raise Fault("Runtime.UserCodeSyntaxError",
                    f"Syntax error in module '{module_name}': {exc}", trace) from exc
    try:
        handler_function: Callable[..., Any] = getattr(module, function_name)
    except AttributeError:
        raise Fault("Runtime.HandlerNotFound",
                    f"Handler '{function_name}' missing on module '{module_name}'") from None
    return handler_function


def _log_error(error: dict[str, Any]) -> None:
    """Print the error as Lambda's runtime does, so it shows in the invocation's log."""
    text = f"[ERROR] {error['errorType']}: {error['errorMessage']}"
    if error["stackTrace"]:
        text += "\nTraceback (most recent call last):\n" + "".join(error["stackTrace"])
    with contextlib.suppress(Exception):  # a broken stderr must not break the reply
        sys.stderr.write(text.rstrip("\n") + "\n")


def _max_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Runtime:
    """The init phase and the invocation loop of one sandbox."""

    def __init__(self, sock: socket.socket, params: dict[str, Any],
                 request_ids: _RequestIdFilter) -> None:
        self.sock = sock
        self.params = params
        self.request_ids = request_ids
        self.reader = protocol.FrameReader(sock)

    def run(self) -> None:
        started = time.perf_counter()
        try:
            handler = load_handler(self.params["handler"])
        except Exception as exc:
            error = error_object(exc)
            _log_error(error)
            body = json.dumps(error).encode()
            self.sock.sendall(protocol.pack({"type": "init_error", "v": protocol.VERSION}, body))
            return
        init_ms = (time.perf_counter() - started) * 1000
        self.sock.sendall(protocol.pack({"type": "ready", "v": protocol.VERSION,
                                         "init_ms": init_ms, "maxrss_kb": _max_rss_kb()}))
        while True:
            frame = self.reader.read()
            if frame is None:
                return  # the supervisor closed the sandbox
            header, body = frame
            if header.get("type") != "invoke":
                raise protocol.ProtocolError(f"unexpected {header.get('type')!r} frame")
            self.sock.sendall(self.invoke(handler, header, body))

    def invoke(self, handler: Callable[..., Any], header: dict[str, Any], body: bytes) -> bytes:
        """Run one call; return the ``result`` frame to send back."""
        started = time.perf_counter()
        request_id = header["request_id"]
        self.request_ids.request_id = request_id
        context = LambdaContext(self.params, request_id, header["arn"], header["deadline_ms"])
        error: dict[str, Any] | None = None
        payload = b""
        try:
            event = json.loads(body) if body else None
        except ValueError as exc:
            error = {"errorMessage": f"Unable to unmarshal input: {exc}",
                     "errorType": "Runtime.UnmarshalError", "stackTrace": []}
        else:
            try:
                result = handler(event, context)
            except Exception as exc:
                error = error_object(exc)
            else:
                try:
                    payload = json.dumps(result).encode()
                except (TypeError, ValueError, RecursionError) as exc:
                    error = {"errorMessage": f"Unable to marshal response: {exc}",
                             "errorType": "Runtime.MarshalError", "stackTrace": []}
        if error is not None:
            _log_error(error)
            payload = json.dumps(error).encode()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # user code may have replaced them
                stream.flush()
        reply = {"type": "result", "ok": error is None,
                 "duration_ms": (time.perf_counter() - started) * 1000,
                 "maxrss_kb": _max_rss_kb()}
        if error is not None:
            reply["error_type"] = error["errorType"]
            reply["error_message"] = error["errorMessage"]
        return protocol.pack(reply, payload)
