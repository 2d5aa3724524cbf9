"""The sandbox runtime: runs invocations in pooled, isolated worker processes.

``node`` (admission, pools, keep-alive) is the entry point; ``pool`` holds the sandboxes
of one revision; ``sandbox`` is the supervisor's handle of one sandbox and the
``SandboxFactory`` port; ``process`` starts sandboxes forked by the zygote;
``zygote_client`` talks to the zygote; ``memory`` enforces memory limits; ``spec``
is what the domain asks for and gets back. ``zygote``, ``worker``, ``protocol`` and
``rehearsal`` run inside the zygote and the sandboxes: stdlib only, loaded there without
this package.
"""
