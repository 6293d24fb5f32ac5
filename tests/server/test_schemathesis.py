"""Schemathesis against a real server (run_stack): requests generated from the OpenAPI schema, valid and
invalid, must get no 5xx and only documented status codes, content types and response bodies.
Bounded: a few examples per operation, derandomized (the same cases on every run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tinyfleet.server.app import create_app
from tinyfleet.server.context import AppContext
from tinyfleet.server.stack import Stack, run_stack

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder: Path = tmp_path_factory.mktemp("schemathesis")
    with run_stack(data_dir=folder, background=False) as running:
        with running.client() as client:  # something to find: a model, a device
            assert client.post("/api/models", json={"name": "kws"}).status_code == 201
            assert client.post("/api/devices", json={"id": "dev-1", "hardware_class": 1}).status_code == 201
        yield running


def _spec() -> dict[str, Any]:
    """The OpenAPI schema, at collection and without a database: describing the routes needs no app
    context (schemathesis.pytest.from_fixture, which would take it from the server, fails on pytest 9)."""
    return create_app(ctx=cast(AppContext, SimpleNamespace()), background=False).openapi()


schema = schemathesis.openapi.from_dict(_spec())


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=8,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, stack: Stack) -> None:
    case.call_and_validate(
        base_url=stack.url, headers={"Authorization": f"Bearer {stack.token}"}, checks=CHECKS
    )
