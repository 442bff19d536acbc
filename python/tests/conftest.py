"""Fixtures: real `yard` processes (switchyard.testing) and a runner for asyncio tests."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from switchyard.testing import Home, YardNode

T = TypeVar("T")


def arun(coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    """Runs an asyncio test body with an overall deadline."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


@pytest.fixture(scope="session")
def home() -> Iterator[Home]:
    h = Home()
    yield h
    h.cleanup()


@pytest.fixture
def node(home: Home) -> Iterator[YardNode]:
    n = YardNode(home=home)
    yield n
    n.close()


@pytest.fixture(scope="module")
def shared_node(home: Home) -> Iterator[YardNode]:
    """One node for the tests of a module that do not change its state."""
    n = YardNode(home=home)
    yield n
    n.close()
