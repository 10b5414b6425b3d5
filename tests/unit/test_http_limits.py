"""Size limits in front of the broker's API (sandbox.http_limits): 413 for big bodies, 431 for big headers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from sandbox.http_limits import BodySizeLimit, HeaderSizeLimit


class Note(BaseModel):
    text: str


def app(limit: int) -> FastAPI:
    api = FastAPI()

    @api.post("/notes")
    async def note(body: Note) -> dict[str, int]:
        return {"length": len(body.text)}

    api.add_middleware(BodySizeLimit, limit=limit)
    api.add_middleware(HeaderSizeLimit, limit=2048)
    return api


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app(1000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http


async def test_bodies_up_to_the_limit_are_served_and_bigger_ones_refused(client: httpx.AsyncClient) -> None:
    assert (await client.post("/notes", json={"text": "x" * 900})).json() == {"length": 900}
    refused = await client.post("/notes", json={"text": "x" * 2000})
    assert refused.status_code == 413 and refused.json() == {"error": "request body too large"}


async def test_a_body_without_a_declared_length_is_counted(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(30):
            yield b"y" * 100
        yield b'"}'

    refused = await client.post("/notes", content=chunks(), headers={"Content-Type": "application/json"})
    assert refused.status_code == 413


async def test_big_header_blocks_are_refused(client: httpx.AsyncClient) -> None:
    assert (await client.post("/notes", json={"text": "ok"}, headers={"X-Pad": "p" * 3000})).status_code == 431
    assert (await client.post("/notes", json={"text": "ok"}, headers={"X-Pad": "p" * 100})).status_code == 200
