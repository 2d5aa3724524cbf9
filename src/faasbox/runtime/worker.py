"""The code inside a sandbox: sets the process up, imports the handler, serves calls.

Runs in a child forked by the zygote. Stdlib only: it never imports the faasbox package
or anything of the control plane. :func:`spare` is the whole life of a sandbox:

0. forked ahead of need (a *spare*): ``setsid`` (the supervisor kills the whole process
   group), the standard streams and Lambda's logging format, then wait for the
   ``init`` frame, whose body is the sandbox's parameters;
1. (:func:`main`) join the memory cgroup before the handler allocates anything,
   rlimits, output to a file the supervisor reads; at the ``namespace`` level, new
   namespaces and a root of its own (:mod:`isolation`); Lambda's environment, the
   private working dir and ``TMPDIR`` (at the ``process`` level the host's ``/tmp``
   stays shared);
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

from . import isolation, protocol

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


def spare(fd: int, stdlib_path: list[str], namespace: dict[str, Any] | None = None) -> None:
    """The life of a sandbox forked ahead of need: get ready for any function, wait for
    the ``init`` frame that says which one, then become that sandbox (:func:`main`).
    ``namespace``: at that isolation level, what to prepare ahead (the namespaces and
    the common part of the root, :func:`isolation.prepare`).

    An end of stream before the ``init`` frame (the supervisor discarded this spare, or
    went away) ends the process quietly.
    """
    os.setsid()
    if namespace is not None:  # before all else: pid 1 of its namespace goes on from here
        isolation.prepare(namespace)
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    os.set_inheritable(fd, False)
    _prepare_streams()
    os.environ.clear()
    request_ids = _setup_logging()
    reader = protocol.FrameReader(sock)
    rehearse(sock, reader, request_ids, stdlib_path)
    global _user_tasks
    _user_tasks = user_tasks()  # ahead of need: RLIMIT_NPROC counts them (see there)
    frame = reader.read()
    if frame is None:
        return
    header, body = frame
    if header.get("type") != "init":
        raise protocol.ProtocolError(f"unexpected {header.get('type')!r} frame")
    main(sock, reader, json.loads(body), stdlib_path, request_ids)


#: Tasks of this user when the spare was forked (None as root, who is not limited).
_user_tasks: int | None = None


def user_tasks() -> int | None:
    """How many tasks (processes and threads) this process's real user runs now; None
    for root, whom RLIMIT_NPROC does not limit. One scan of ``/proc``."""
    uid = os.getuid()
    if uid == 0:
        return None
    count = 0
    with contextlib.suppress(OSError), os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid != uid:
                    continue
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    count += int(f.read().rsplit(b")", 1)[1].split()[17])
            except (OSError, ValueError, IndexError):
                continue
    return count


def main(sock: socket.socket, reader: protocol.FrameReader, params: dict[str, Any],
         stdlib_path: list[str], request_ids: _RequestIdFilter) -> None:
    """Become the sandbox described by ``params`` and serve until the socket closes."""
    marks: list[tuple[str, float]] | None = [] if params.get("trace") else None
    if marks is not None:
        marks.append(("child: init frame read", time.perf_counter()))
    joins = [params["cgroup_join"]] if params.get("cgroup_join") else []
    for path in joins + list(params.get("cgroup_join_more") or []):
        # first: later pages are charged to the memory cgroup, later forks counted
        join = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(join, b"0")  # "0" is the writer itself
        finally:
            os.close(join)
    _set_limits(params)
    _redirect_output(params["output"])
    if params.get("namespace"):  # returns in pid 1 of the new namespaces
        try:
            isolation.enter(params["namespace"])
        except OSError as exc:
            error = {"errorMessage": f"cannot isolate the sandbox: {exc}",
                     "errorType": "Runtime.SandboxSetupError", "stackTrace": []}
            _log_error(error)
            sock.sendall(protocol.pack({"type": "init_error", "v": protocol.VERSION},
                                       json.dumps(error).encode()))
            return
        if marks is not None:
            marks.append(("child: namespaces and root", time.perf_counter()))
    os.environ.update(params["env"])  # the spare's environment is empty
    time.tzset()
    _enter_work_dir(params["work_dir"], params["code_dir"])
    sys.path[:] = [p for p in (params["code_dir"], params.get("layer_dir")) if p]
    sys.path += stdlib_path
    if params.get("lib_dir"):  # last: the function's own modules and layer win
        sys.path.append(params["lib_dir"])
    sys.dont_write_bytecode = True  # code folders are read-only by convention
    level = params["env"].get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in _LEVELS:
        logging.getLogger().setLevel(_LEVELS[level])
    if marks is not None:
        marks.append(("child: set up", time.perf_counter()))
    Runtime(sock, params, request_ids, reader, marks).run()


#: What :func:`rehearse` plays a sandbox with: the shape of real parameters.
_REHEARSAL = {
    "handler": "rehearsal.handler", "function_name": "rehearsal", "function_version": "$LATEST",
    "memory_mb": 128, "log_group_name": "/aws/lambda/rehearsal",
    "log_stream_name": "2000/01/01/[$LATEST]000000000000", "report_rss": True,
    "env": {f"FAASBOX_REHEARSAL_{i}": "/home/faasbox/sandboxes/000000000000/tmp"
            for i in range(32)},
}


def rehearse(sock: socket.socket, reader: protocol.FrameReader,
             request_ids: _RequestIdFilter, stdlib_path: list[str]) -> None:
    """Play a whole sandbox life once, with :mod:`rehearsal` as the function, and undo
    its traces (module, import cache, environment).

    A forked child pays a copy-on-write fault the first time it writes to each page it
    shares with the zygote, and reference counting writes to every object it uses:
    importing a handler, filling the environment, decoding parameters and serving a
    first call would take about twice as long in a fresh child. A spare rehearses while
    it waits, so a cold start finds those pages already its own.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    saved_path = sys.path[:]
    sys.path[:] = [here, *stdlib_path]
    try:
        params = json.loads(json.dumps(_REHEARSAL))
        os.environ.update(params["env"])
        time.tzset()
        with contextlib.suppress(OSError):
            os.scandir(here).close()
        handler = load_handler(params["handler"])
        runtime = Runtime(sock, params, request_ids, reader)
        header = {"request_id": "00000000-0000-4000-8000-000000000000",
                  "arn": "arn:aws:lambda:local:000000000000:function:rehearsal",
                  "deadline_ms": int(time.time() * 1000) + 3000}
        protocol.unpack(runtime.invoke(handler, header, b'{"rehearsal": [1, 2.5, "x"]}'))
        protocol.pack({"type": "ready", "v": protocol.VERSION, "init_ms": 1.5, "maxrss_kb": 1})
    finally:
        os.environ.clear()
        sys.modules.pop("rehearsal", None)
        sys.path_importer_cache.pop(here, None)
        sys.path[:] = saved_path
        request_ids.request_id = ""


def _set_limits(params: dict[str, Any]) -> None:
    """Open files, processes, no core dumps.

    RLIMIT_NPROC counts every task of the *user*, not of the sandbox, and root is
    exempt from it: as root it is left alone (``max_processes`` is not enforced at the
    process level); otherwise it is set to the user's tasks counted when the spare was
    forked plus ``max_processes``, capped by the hard limit, so that a busy desktop
    session does not leave a sandbox unable to fork.
    """
    limits = [(resource.RLIMIT_NOFILE, params["max_open_files"]), (resource.RLIMIT_CORE, 0)]
    tasks = _user_tasks if _user_tasks is not None else user_tasks()
    if tasks is not None:
        limits.append((resource.RLIMIT_NPROC, tasks + params["max_processes"]))
    for which, value in limits:
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))


def _prepare_streams() -> None:
    """stdin reads nothing; ``sys.stdout``/``sys.stderr`` write through to fds 1 and 2
    (without a buffer), which :func:`_redirect_output` points at the output file."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", write_through=True)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _redirect_output(path: str) -> None:
    """fd 1 and 2 append to the output file; prints reach it at once (no buffer)."""
    out = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)


def _enter_work_dir(work_dir: str, code_dir: str) -> None:
    """A private cwd that still shows the code's files, as Lambda's cwd is the code."""
    try:
        for entry in os.scandir(code_dir):
            os.symlink(entry.path, os.path.join(work_dir, entry.name))
    except OSError:
        pass
    os.chdir(work_dir)


def _setup_logging() -> _RequestIdFilter:
    """The root logger as Lambda's Python runtime configures it (the level is set from
    ``AWS_LAMBDA_LOG_LEVEL`` once the environment is known)."""
    request_ids = _RequestIdFilter()
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(_LOG_FORMAT, "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(request_ids)
    logging.getLogger().handlers[:] = [handler]
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
                 request_ids: _RequestIdFilter, reader: protocol.FrameReader,
                 marks: list[tuple[str, float]] | None = None) -> None:
        self.sock = sock
        self.params = params
        self.request_ids = request_ids
        self.reader = reader
        self.marks = marks
        #: Whether the supervisor needs ru_maxrss for Max Memory Used (no cgroup peak).
        self.report_rss = bool(params.get("report_rss", True))

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
        ready: dict[str, Any] = {"type": "ready", "v": protocol.VERSION, "init_ms": init_ms,
                                 "maxrss_kb": _max_rss_kb()}
        if self.marks is not None:
            ready["trace"] = [*self.marks, ("child: handler imported", time.perf_counter())]
        self.sock.sendall(protocol.pack(ready))
        read, send, invoke = self.reader.read, self.sock.sendall, self.invoke
        while True:
            frame = read()
            if frame is None:
                return  # the supervisor closed the sandbox
            header, body = frame
            if header.get("type") != "invoke":
                raise protocol.ProtocolError(f"unexpected {header.get('type')!r} frame")
            send(invoke(handler, header, body))

    def invoke(self, handler: Callable[..., Any], header: dict[str, Any], body: bytes) -> bytes:
        """Run one call; return the ``result`` frame to send back.

        The frame tells the supervisor where the output file ends now (``out``), so it
        reads the file only when something was printed, and the process's peak RSS
        where the supervisor has no better measure of Max Memory Used.
        """
        started = time.perf_counter()
        request_id = header["request_id"]
        self.request_ids.request_id = request_id
        renewed = header.get("env")
        if renewed:  # the role's credentials, renewed before they expire
            os.environ.update(renewed)
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
            try:  # noqa: SIM105 (user code may have replaced or closed them)
                stream.flush()
            except Exception:
                pass
        try:
            out = os.lseek(1, 0, os.SEEK_CUR)  # fds 1 and 2 share one O_APPEND file offset
        except OSError:
            out = -1
        maxrss = _max_rss_kb() if self.report_rss else 0
        duration_ms = (time.perf_counter() - started) * 1000
        if error is None:
            raw = (b'{"type":"result","ok":true,"duration_ms":%.4f,"out":%d,"maxrss_kb":%d,'
                   b'"body":%d}' % (duration_ms, out, maxrss, len(payload)))
            return b"".join((protocol.LENGTH.pack(len(raw)), raw, payload))
        return protocol.pack({"type": "result", "ok": False, "duration_ms": duration_ms,
                              "out": out, "maxrss_kb": maxrss,
                              "error_type": error["errorType"],
                              "error_message": error["errorMessage"]}, payload)
