"""The console's guard over real HTTP: no page without a session, no change without the
session's CSRF token from this origin, cookie flags, logout, and the audit actor.
(The browser test, test_console_browser.py, walks the pages themselves.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.admin.context import AdminContext
from gateway.admin.ratelimit import IpRateLimiter
from gateway.admin.server import build_app
from gateway.config import load_config
from gateway.supervisor import Gateway
from tests.fixtures.admin import TOKEN, admin_section
from tests.fixtures.gateway import running_gateway, write_config

PAGES = ("/console", "/console/overview", "/console/trace", "/console/queue",
         "/console/suppressions", "/console/suppressions.csv")


def jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # keep cookies for an IP address host


async def login(http: aiohttp.ClientSession, base: str) -> str:
    async with http.post(f"{base}/console/login", data={"token": TOKEN},
                         allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
        assert resp.headers["Location"] == "/console/overview"
        cookie = resp.headers["Set-Cookie"]
    async with http.get(f"{base}/console/suppressions") as resp:
        found = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
    assert found is not None
    return cookie + "\n" + found.group(1)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    config = write_config(tmp_path, 9, extra=admin_section(tmp_path))
    async with running_gateway(config) as gw:
        yield gw


async def suppressed(gw: Gateway, target: str) -> bool:
    return bool(await gw.state.suppressions.lookup((target,), gw.clock.now()))


async def test_pages_need_a_session_and_changes_need_csrf_from_this_origin(
        gateway: Gateway) -> None:
    gw = gateway
    assert gw.admin is not None
    base = f"http://127.0.0.1:{gw.admin.port}"
    add = f"{base}/console/suppressions/add"
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        for path in PAGES:
            # A bearer token is for the API: it opens no console page.
            async with http.get(base + path, allow_redirects=False,
                                headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert (resp.status, resp.headers.get("Location")) in (
                    (303, "/console/login"), (303, "/console/overview")), path
        async with http.post(add, data={"target": "a@example.net", "csrf": "x"}) as resp:
            assert resp.status == 403
        async with http.post(f"{base}/console/login", data={"token": TOKEN + "x"}) as resp:
            assert resp.status == 401 and "Set-Cookie" not in resp.headers

        cookie, csrf = (await login(http, base)).split("\n")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie  # loopback: the browser talks plain HTTP here

        form = {"target": "a@example.net", "scope": "all", "reason": "manual"}
        forged: list[tuple[dict[str, str], dict[str, str]]] = [
            (form, {}),  # no CSRF token
            ({**form, "csrf": csrf[:-1] + ("A" if csrf[-1] != "A" else "B")}, {}),
            ({**form, "csrf": csrf}, {"Origin": "https://evil.example"}),
            ({**form, "csrf": csrf}, {"Origin": "null"}),  # a sandboxed or opaque origin
        ]
        for data, headers in forged:
            async with http.post(add, data=data, headers=headers,
                                 allow_redirects=False) as resp:
                assert resp.status == 403
        assert not await suppressed(gw, "a@example.net")

        async with http.post(add, data={**form, "csrf": csrf}, allow_redirects=False,
                             headers={"Origin": base}) as resp:
            assert resp.status == 303
        assert await suppressed(gw, "a@example.net")
        actions = [(e.actor, e.action) for e in await gw.state.audit.entries()]
        assert ("console:admin", "console.login") in actions
        assert ("console:admin", "suppress.add") in actions

        async with http.post(f"{base}/console/logout", data={"csrf": csrf},
                             allow_redirects=False) as resp:
            assert resp.status == 303
    # The old session's cookie, replayed, is worth nothing after logout.
    sid = cookie.split(";")[0].split("=", 1)[1]
    async with aiohttp.ClientSession(cookies={"gw_console": sid}) as http:
        async with http.get(f"{base}/console/overview", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/console/login"
        async with http.post(add, data={**form, "target": "b@example.net", "csrf": csrf},
                             allow_redirects=False) as resp:
            assert resp.status == 403
    assert not await suppressed(gw, "b@example.net")


async def test_the_cookie_is_secure_when_the_admin_listener_is_not_on_loopback(
        tmp_path: Path) -> None:
    config = write_config(tmp_path, 9, extra=admin_section(tmp_path).replace(
        "address: 127.0.0.1", "address: 0.0.0.0"))
    gw = Gateway(load_config(config))
    assert gw.config.admin is not None and not gw.config.admin.is_loopback
    await gw.state.open()
    app = build_app(AdminContext(gw, IpRateLimiter(6.0, 10, gw.clock)), gw.config.admin)
    server = TestServer(app, host="127.0.0.1")  # served on loopback for the test only
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http, http.post(
                server.make_url("/console/login"), data={"token": TOKEN},
                allow_redirects=False) as resp:
            assert resp.status == 303
            assert "Secure" in resp.headers["Set-Cookie"]
    finally:
        await server.close()
        await gw.state.close()
