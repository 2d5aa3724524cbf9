"""The one error tree of faasbox.

Every error the platform raises on purpose is a :class:`FaasboxError`. Each class says
when it is raised, carries the AWS-style ``code`` a Lambda user recognises, and the HTTP
status the server answers with (the server maps errors to responses in one place, from
these two attributes). Lookups also subclass :class:`LookupError` and carry what they
missed.
"""

from __future__ import annotations

import re
from collections.abc import Callable


class FaasboxError(Exception):
    """Root of every error faasbox raises on purpose."""

    code = "ServiceException"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"errorType": self.code, "errorMessage": self.message}


class InvalidParameterError(FaasboxError, ValueError):
    """Raised when a request parameter is malformed or out of range (name, handler,
    memory, timeout, environment, JSON payload, qualifier...). Nothing was changed."""

    code = "InvalidParameterValueException"
    http_status = 400


class InvalidPackageError(InvalidParameterError):
    """Raised when a deployment package is unsafe or too large: path traversal, absolute
    paths, symlinks leaving the package, size, entry count or compression-ratio limits.
    The message names the offending entry; nothing is left half-written."""

    code = "InvalidPackageException"


class DependencyBuildError(FaasboxError):
    """Raised when ``pip install --target`` fails for a function's requirements. The
    message holds pip's own error text; the previously deployed code keeps serving."""

    code = "DependencyBuildException"
    http_status = 400


class PayloadTooLargeError(FaasboxError):
    """Raised when an invocation payload or response exceeds its size limit."""

    code = "RequestTooLargeException"
    http_status = 413


class NotFoundError(FaasboxError, LookupError):
    """Raised when a named resource does not exist. ``kind`` and ``name`` say which."""

    code = "ResourceNotFoundException"
    http_status = 404

    def __init__(self, kind: str, name: str, message: str | None = None) -> None:
        super().__init__(message or f"{kind} not found: {name}")
        self.kind = kind
        self.name = name


class FunctionNotFoundError(NotFoundError):
    """Raised when no function has the given name."""

    def __init__(self, name: str) -> None:
        super().__init__("Function", name)


class VersionNotFoundError(NotFoundError):
    """Raised when a function has no such published version."""

    def __init__(self, function: str, version: str) -> None:
        super().__init__("Version", f"{function}:{version}")


class AliasNotFoundError(NotFoundError):
    """Raised when a function has no alias of that name."""

    def __init__(self, function: str, alias: str) -> None:
        super().__init__("Alias", f"{function}:{alias}")


class InvocationNotFoundError(NotFoundError):
    """Raised when no invocation record has the given request id."""

    def __init__(self, request_id: str) -> None:
        super().__init__("Invocation", request_id)


class QueueNotFoundError(NotFoundError):
    """Raised when no queue has the given name."""

    code = "QueueDoesNotExist"

    def __init__(self, name: str) -> None:
        super().__init__("Queue", name)


class BucketNotFoundError(NotFoundError):
    """Raised when no bucket has the given name."""

    code = "NoSuchBucket"

    def __init__(self, name: str) -> None:
        super().__init__("Bucket", name)


class ObjectNotFoundError(NotFoundError):
    """Raised when a bucket holds no object under the key. ``name`` is ``bucket/key``."""

    code = "NoSuchKey"

    def __init__(self, name: str) -> None:
        super().__init__("Object", name)


class TriggerNotFoundError(NotFoundError):
    """Raised when no queue -> function mapping (trigger) has the given id."""

    def __init__(self, name: str) -> None:
        super().__init__("Trigger", name)


class AccessKeyNotFoundError(NotFoundError):
    """Raised for an access key id this platform never issued (or deleted)."""

    def __init__(self, name: str) -> None:
        super().__init__("Access key", name)


class PolicyNotFoundError(NotFoundError):
    """Raised for a policy name that does not exist (or is not attached where named)."""

    def __init__(self, name: str) -> None:
        super().__init__("Policy", name)


class RoleNotFoundError(NotFoundError):
    """Raised for an execution role that does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__("Role", name)


class NotificationNotFoundError(NotFoundError):
    """Raised when a bucket has no notification of the given id."""

    def __init__(self, name: str) -> None:
        super().__init__("Notification", name)


class ScheduleNotFoundError(NotFoundError):
    """Raised when no schedule has the given name."""

    def __init__(self, name: str) -> None:
        super().__init__("Schedule", name)


class AlarmNotFoundError(NotFoundError):
    """Raised when no alarm has the given name."""

    def __init__(self, name: str) -> None:
        super().__init__("Alarm", name)


class FunctionUrlNotFoundError(NotFoundError):
    """Raised when a function (or ``function:qualifier``) has no URL config."""

    def __init__(self, name: str) -> None:
        super().__init__("FunctionUrl", name)


#: NotFoundError classes by ``kind``, so the remote client raises the class the server did.
NOT_FOUND_BY_KIND: dict[str, Callable[[str], NotFoundError]] = {
    "Queue": QueueNotFoundError,
    "Bucket": BucketNotFoundError,
    "Object": ObjectNotFoundError,
    "Trigger": TriggerNotFoundError,
    "Notification": NotificationNotFoundError,
    "Schedule": ScheduleNotFoundError,
    "Alarm": AlarmNotFoundError,
    "FunctionUrl": FunctionUrlNotFoundError,
    "Access key": AccessKeyNotFoundError,
    "Policy": PolicyNotFoundError,
    "Role": RoleNotFoundError,
}


class InvalidReceiptHandleError(InvalidParameterError):
    """Raised when a receipt handle is malformed, forged, or no longer current (the
    message was received again by someone else, or deleted). Nothing was changed."""

    code = "ReceiptHandleIsInvalid"


class PreconditionFailedError(FaasboxError):
    """Raised when a conditional write's ``if_match`` / ``if_none_match`` does not hold
    for the object as it is now. Nothing was written."""

    code = "PreconditionFailed"
    http_status = 412


class InvalidRangeError(FaasboxError):
    """Raised when a requested byte range does not overlap the object."""

    code = "InvalidRange"
    http_status = 416


class ConflictError(FaasboxError):
    """Raised when a resource already exists or is in a state that forbids the change."""

    code = "ResourceConflictException"
    http_status = 409


class BucketNotEmptyError(ConflictError):
    """Raised when deleting a bucket that still holds objects."""

    code = "BucketNotEmpty"


class UnauthorizedError(FaasboxError):
    """Raised when a request that needs a signature carries none (a function URL with
    auth ``platform`` called unsigned)."""

    code = "UnauthorizedException"
    http_status = 401


class ForbiddenError(FaasboxError):
    """Raised when a request's signature or credentials are refused, or its signer's
    policies do not allow what it asks; the message says which."""

    code = "AccessDeniedException"
    http_status = 403


class TooManyRequestsError(FaasboxError):
    """Raised when an invocation is refused at once because the function's reserved
    concurrency or the node's memory capacity is used up (never queued without bound)."""

    code = "TooManyRequestsException"
    http_status = 429


class ServiceUnavailableError(FaasboxError):
    """Raised when the platform cannot take the call now (it is shutting down)."""

    code = "ServiceUnavailableException"
    http_status = 503


class ServerUnavailableError(FaasboxError):
    """Raised by the remote client when nothing answers at the endpoint."""

    code = "ServerUnavailable"
    http_status = 503


class RemoteError(FaasboxError):
    """Raised by the remote client for an error answer the client has no class for."""

    def __init__(self, code: str, message: str, http_status: int) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status


#: Error classes by code, so the remote client raises the same class the server did.
BY_CODE: dict[str, type[FaasboxError]] = {
    cls.code: cls
    for cls in (
        InvalidParameterError,
        InvalidPackageError,
        DependencyBuildError,
        PayloadTooLargeError,
        ConflictError,
        TooManyRequestsError,
        ServiceUnavailableError,
        InvalidReceiptHandleError,
        PreconditionFailedError,
        InvalidRangeError,
        BucketNotEmptyError,
        UnauthorizedError,
        ForbiddenError,
    )
}


_NOT_FOUND_RE = re.compile(r"^([\w ]+) not found: (.+)$")


def not_found(message: str) -> NotFoundError:
    """The NotFoundError a 404 answer's message (``<kind> not found: <name>``) stands
    for, so that clients raise the class the server raised."""
    match = _NOT_FOUND_RE.match(message)
    if match is None:
        return NotFoundError("Resource", "", message)
    kind, name = match.groups()
    function, _, qualifier = name.rpartition(":")
    if kind == "Function":
        return FunctionNotFoundError(name)
    if kind == "Version" and function:
        return VersionNotFoundError(function, qualifier)
    if kind == "Alias" and function:
        return AliasNotFoundError(function, qualifier)
    if kind == "Invocation":
        return InvocationNotFoundError(name)
    if kind in NOT_FOUND_BY_KIND:
        return NOT_FOUND_BY_KIND[kind](name)
    return NotFoundError(kind, name, message)
