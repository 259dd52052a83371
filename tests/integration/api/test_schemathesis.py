"""Property-based requests from the OpenAPI document (schemathesis) with an admin key: no 5xx,
and every answer matches the documented status codes, content types and schemas.

The upload (its ``wait`` may block for a minute) and the endless event stream are excluded
here; their own tests cover them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.api.conftest import Api, make_api


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    made, jobs = make_api(tmp_path_factory.mktemp("schemathesis"), rate_limit="100000/minute")
    with made.client:
        made.client.post(
            "/v1/uploads", headers=made.auth("admin"), files={"file": ("a.mp4", b"abc")}
        )
        yield made
    jobs.close()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_api_conforms_to_its_openapi(shared_api: Api) -> None:
    schema = (
        schemathesis.openapi.from_asgi("/openapi.json", shared_api.app)
        .exclude(path="/v1/events")
        .exclude(path="/v1/uploads", method="POST")
    )
    headers = shared_api.auth("admin")
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()
        tested.append(operation.label)
    assert len(tested) >= 12, tested
