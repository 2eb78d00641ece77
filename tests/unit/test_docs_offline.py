"""The API's documentation pages work without the internet (issue 20): `/docs` and `/redoc`
loaded unpinned scripts from a CDN, so whatever the CDN served ran in the page, and the pages
were blank on a network without it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from denial_risk.settings import Settings
from serving.app import create_app
from serving.worklist import WorklistService
from tests.utils.services import FakeService

_REFERENCE = re.compile(r"""(?:src|href|url)\s*[=:(]\s*['"]?([^'"\s)>]+)""", re.IGNORECASE)
_ANY_URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+""")


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(Settings(api_keys=["docs-test-key-0123456789"]), lambda: FakeService("1"))
    app.state.worklist_service = WorklistService()
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", {".js": "javascript", ".css": "text/css", ".png": "image/png"}),
        ("/redoc", {".js": "javascript", ".png": "image/png"}),
    ],
)
def test_a_docs_page_loads_only_assets_the_api_serves(
    client: TestClient, page: str, assets: dict[str, str]
) -> None:
    answer = client.get(page)
    assert answer.status_code == 200
    html = answer.text
    # No other host anywhere in the page: no script, style, font or icon from elsewhere.
    assert not _ANY_URL.findall(html), _ANY_URL.findall(html)
    referenced = {link for link in _REFERENCE.findall(html) if not link.startswith("data:")}
    served = {link for link in referenced if link.endswith(tuple(assets))}
    assert {link.rsplit(".", 1)[-1] for link in served} == {ext[1:] for ext in assets}
    for link in served:
        assert not urlsplit(link).netloc, link
        asset = client.get(link)
        assert asset.status_code == 200, link
        kind = assets["." + link.rsplit(".", 1)[-1]]
        assert kind in asset.headers["content-type"], (link, asset.headers["content-type"])
        assert len(asset.content) > 1_000, link
    assert client.get("/openapi.json").status_code == 200  # what the pages load next


def test_swagger_ui_sends_the_spec_to_no_validator(client: TestClient) -> None:
    # Its online validator badge asks validator.swagger.io about the spec's URL.
    assert '"validatorUrl": null' in client.get("/docs").text
