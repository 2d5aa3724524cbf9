"""The client-facing contracts of each resource, one module per resource.

``Client`` (``faasbox.sdk``) exposes one object per resource -- ``client.queues``,
``client.objects``, ``client.triggers``, ``client.schedules``, ``client.alarms``,
``client.metrics`` -- each implementing the abstract class of its module here. The
local platform implements them with the domain services (``faasbox.events``...), the
remote client over HTTP (``faasbox.remote``); both raise the same errors.
"""
