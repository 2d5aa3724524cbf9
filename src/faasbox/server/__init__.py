"""The HTTP API (FastAPI): thin routes over a :class:`faasbox.sdk.Client`.

Import :func:`faasbox.server.app.create_app` for the app; this package root stays
import-light so that the CLI can read example manifests without loading FastAPI.
"""
