"""How an answer is classified: a web page, a body cut short, the setting to name, Retry-After
(the runs: tests/integration/test_transport_faults.py)."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest
import requests
from dlt.sources.helpers.requests.retry import wait_exponential_retry_after
from tenacity import RetryCallState

from sources.polyai.http.client import base_url_setting
from sources.polyai.http.retries import body_is_broken, is_web_page
from sources.polyai.http.transport import Fetched, RetryAfterWait


def response(body: bytes, content_type: str | None = "application/json") -> requests.Response:
    answer = requests.Response()
    answer.status_code = 200
    answer._content = body
    if content_type:
        answer.headers["Content-Type"] = content_type
    return answer


@pytest.mark.parametrize(
    ("body", "content_type", "web_page", "retried"),
    [
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/html; charset=utf-8", True, False),
        (b"\n  <html><body>Sign in</body></html>", "application/json", True, False),
        (b"Please sign in", "text/html", True, False),
        (b'{"conversations": [{"id": "a"', "application/json", False, True),
        (b'{"conversations": [{"id": "a"', "text/html", False, True),
        (b'{"conversations": [], "cursor": null}', "text/html", False, False),
        (b"", None, False, True),
    ],
    ids=["html", "html-as-json", "text-as-html", "cut-json", "cut-json-as-html", "json", "empty"],
)
def test_a_web_page_is_told_from_a_json_body_cut_short(
    body: bytes, content_type: str | None, web_page: bool, retried: bool
) -> None:
    answer = response(body, content_type)
    assert is_web_page(answer) is web_page
    assert body_is_broken(answer, None) is retried


def test_the_setting_named_is_region_when_base_url_was_not_set() -> None:
    assert base_url_setting("https://api.uk-1.platform.polyai.app") == "region"
    assert base_url_setting("https://proxy.example.com/polyai") == "base_url"


def answered(attempt: int, result: object) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.set_result(result)
    return state


@pytest.mark.parametrize(
    "retry_after",
    ["7", " 12 ", "600", "0", "soon", "", f"{formatdate(time.time() + 30, usegmt=True)}"],
    ids=["seconds", "spaced", "over-the-longest-delay", "zero", "unreadable", "empty", "a-date"],
)
@pytest.mark.parametrize("attempt", [1, 3])
def test_retry_after_is_honoured_as_dlt_honours_it(retry_after: str, attempt: int) -> None:
    response = requests.Response()
    response.status_code = 429
    response.headers["Retry-After"] = retry_after
    ours = RetryAfterWait(multiplier=1.5, max=60.0)(answered(attempt, Fetched(response)))
    dlts = wait_exponential_retry_after(multiplier=1.5, max=60.0)(answered(attempt, response))
    assert ours == pytest.approx(dlts, abs=1.0)
    if retry_after.strip().isdigit() and int(retry_after) > 0:
        assert ours == min(60.0, int(retry_after))
