"""The simulator answers as PolyAI's published OpenAPI specs say: the connector is tested on the contract."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from polyai_simulator import SimClock, SimConfig, Simulator, SimulatorServer
from tests.support.harness import T0

# PolyAI's published specs (August 2026), copied from shared/polyai-api/.
SPECS = Path(__file__).resolve().parents[1] / "support" / "specs"


def openapi_to_json_schema(node: Any, nullable_scalars: bool = False) -> Any:
    """OpenAPI 3.0 `nullable` to JSON Schema; optionally every scalar nullable (v1's documented nulls)."""
    if isinstance(node, list):
        return [openapi_to_json_schema(item, nullable_scalars) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {k: openapi_to_json_schema(v, nullable_scalars) for k, v in node.items() if k != "nullable"}
    kind = node.get("type")
    if isinstance(kind, str) and (
        node.get("nullable") or (nullable_scalars and kind in ("string", "boolean"))
    ):
        converted["type"] = [kind, "null"]
    return converted


def validator(spec_name: str, schema_ref: str, nullable_scalars: bool = False) -> Draft202012Validator:
    spec = openapi_to_json_schema(json.loads((SPECS / spec_name).read_text()), nullable_scalars)
    registry = Registry().with_resource("spec", Resource(contents=spec, specification=DRAFT202012))
    return Draft202012Validator({"$ref": f"spec{schema_ref}"}, registry=registry)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Simulator, str]]:
    config = SimConfig(seed=31, n_conversations=150, start=T0, end=T0 + timedelta(hours=2))
    simulator = Simulator(config, SimClock(T0 + timedelta(hours=1, minutes=30)))  # some in progress
    server = SimulatorServer(simulator)
    yield simulator, server.start()
    server.stop()


def get(simulator: Simulator, base_url: str, version: str, **params: Any) -> requests.Response:
    url = f"{base_url}/{version}/{simulator.config.account_id}/{simulator.config.project_id}/conversations"
    return requests.get(url, params=params, headers={"x-api-key": simulator.config.api_key}, timeout=30)


def test_v3_pages_validate_against_the_v3_spec(served: tuple[Simulator, str]) -> None:
    simulator, base_url = served
    check = validator("openapi-v3.json", "#/components/schemas/GetConversationsResponse")
    params: dict[str, Any] = {"limit": 40, "include_latency": "true"}
    pages = 0
    while True:
        body = get(simulator, base_url, "v3", **params).json()
        errors = [f"{list(e.path)}: {e.message}" for e in check.iter_errors(body)]
        assert not errors, errors[:5]
        pages += 1
        if not body["cursor"]:
            break
        params["cursor"] = body["cursor"]
    assert pages > 1
    assert any(c["in_progress"] for c in simulator.truth()), "in-progress conversations were validated too"


def test_v1_pages_validate_against_the_v1_spec_with_its_nulls(served: tuple[Simulator, str]) -> None:
    simulator, base_url = served
    spec = (
        json.loads((SPECS / "openapi-v1.json").read_text()) if (SPECS / "openapi-v1.json").exists() else None
    )
    if spec is None:
        pytest.skip("openapi-v1.json is not beside the repository")
    check = validator("openapi-v1.json", "#/components/schemas/Conversation", nullable_scalars=True)
    body = get(simulator, base_url, "v1", limit=1000).json()
    assert "descriptions" in body and "cursor" not in body
    for conversation in body["conversations"]:
        errors = [f"{list(e.path)}: {e.message}" for e in check.iter_errors(conversation)]
        assert not errors, errors[:5]


@pytest.mark.parametrize(
    ("headers", "path", "params", "status", "code"),
    [
        ({}, None, {}, 401, "UNAUTHORIZED"),
        ({"x-api-key": "wrong"}, None, {}, 403, "FORBIDDEN"),
        (None, "/v3/acc-demo/no-such-project/conversations", {}, 404, "PROJECT_NOT_FOUND"),
        (None, None, {"limit": 0}, 400, "INVALID_PARAMETER"),
        (None, None, {"cursor": "%%%"}, 400, "INVALID_CURSOR"),
        (None, None, {"variant_id": "a", "variant_name": "b"}, 400, "INVALID_PARAMETER"),
    ],
)
def test_errors_use_the_documented_envelope(
    served: tuple[Simulator, str],
    headers: dict[str, str] | None,
    path: str | None,
    params: dict[str, Any],
    status: int,
    code: str,
) -> None:
    simulator, base_url = served
    check = validator("openapi-v3.json", "#/components/schemas/Error")
    url = base_url + (
        path or f"/v3/{simulator.config.account_id}/{simulator.config.project_id}/conversations"
    )
    response = requests.get(
        url,
        params=params,
        headers={"x-api-key": simulator.config.api_key} if headers is None else headers,
        timeout=30,
    )
    body = response.json()
    assert response.status_code == status
    assert body["error_code"] == code
    assert list(check.iter_errors(body)) == []
    assert body["error_id"] == response.headers["X-PolyAI-Correlation-Id"]
