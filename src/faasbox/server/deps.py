"""What routes need from the app: the client it serves."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from faasbox.sdk import Client


def get_client(request: Request) -> Client:
    client: Client = request.app.state.client
    return client


ClientDep = Annotated[Client, Depends(get_client)]
