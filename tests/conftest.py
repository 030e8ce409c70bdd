"""Fixtures: a private real Redis for the whole session, and a fresh queue name per test."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).parent))

from redis_server import RedisServer

from rediswq import Queue


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    return redis_server.client()


@pytest.fixture
def queue_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def queue(client: redis.Redis, queue_name: str) -> Iterator[Queue]:
    q = Queue(client, queue_name, retry_backoff_secs=0.05, retry_backoff_cap_secs=0.2)
    yield q
    q.purge()
