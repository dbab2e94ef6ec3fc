"""REST authentication and the health probe.

* POST /api/auth/login answers {"token", "refreshToken"}: both real three-part JWTs with iat/exp in seconds.
* A wrong password answers 401 with ThingsBoard's error JSON (errorCode 10); a request without a token,
  or with a token that is not valid, answers 401.
* GET /api/health answers 200 with the contract's JSON body (UP, database UP, bus LOCAL), without authentication.
"""

from __future__ import annotations

import time

import pytest

from acc_support import (
    SYSADMIN_EMAIL,
    SYSADMIN_PASSWORD,
    TENANT_EMAIL,
    TENANT_PASSWORD,
    Rest,
    jwt_part,
    login,
)


def test_health_probe(http_url):
    resp = Rest(http_url).get("/api/health")
    assert resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}"
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"the health body is not JSON: {resp.text[:300]!r}") from None
    # docs/configuration.md: a single node with a healthy database is UP, its bus LOCAL.
    assert body.get("status") == "UP", f"health status: {body}"
    components = body.get("components") or {}
    assert components.get("database") == "UP" and components.get("bus") == "LOCAL", f"health components: {body}"


def assert_error_json(resp, status: int, error_code: int) -> dict:
    assert resp.status_code == status, f"HTTP {resp.status_code}: {resp.text[:300]}"
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {resp.text[:300]!r}") from None
    assert isinstance(body, dict), body
    assert body.get("status") == status and body.get("errorCode") == error_code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert isinstance(body.get("timestamp"), int), body
    return body


def test_login_with_wrong_password_is_401(http_url):
    resp = login(http_url, TENANT_EMAIL, "not-the-password")
    body = assert_error_json(resp, 401, 10)
    assert body["message"] == "Invalid username or password", body


def test_request_without_token_is_401(http_url):
    resp = Rest(http_url).get("/api/tenant/devices?pageSize=10&page=0")
    assert_error_json(resp, 401, 10)


def test_request_with_invalid_token_is_401(http_url):
    resp = Rest(http_url, token="not.a.token").get("/api/auth/user")
    assert resp.status_code == 401, f"HTTP {resp.status_code}: {resp.text[:300]}"


@pytest.mark.parametrize(
    "email, password, authority",
    [(TENANT_EMAIL, TENANT_PASSWORD, "TENANT_ADMIN"), (SYSADMIN_EMAIL, SYSADMIN_PASSWORD, "SYS_ADMIN")],
    ids=["tenant-admin", "sysadmin"],
)
def test_login_tokens_are_jwts(http_url, email, password, authority):
    before = int(time.time())
    resp = login(http_url, email, password)
    after = int(time.time())
    assert resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:300]}"
    body = resp.json()
    assert isinstance(body.get("token"), str) and isinstance(body.get("refreshToken"), str), body

    for name in ("token", "refreshToken"):
        header = jwt_part(body[name], 0)
        assert isinstance(header.get("alg"), str), f"{name} header: {header}"
        claims = jwt_part(body[name], 1)
        iat, exp = claims.get("iat"), claims.get("exp")
        assert type(iat) is int and type(exp) is int, f"{name}: iat/exp must be integers: {claims}"
        assert before - 300 <= iat <= after + 300, f"{name}: iat {iat} is not now in seconds ({before})"
        assert exp > after, f"{name}: exp {exp} is not in the future (seconds)"
        assert claims.get("sub") == email, f"{name}: sub {claims.get('sub')!r}"

    access, refresh = jwt_part(body["token"], 1), jwt_part(body["refreshToken"], 1)
    assert access.get("scopes") == [authority], access
    assert refresh.get("scopes") == ["REFRESH_TOKEN"], refresh
    assert refresh["exp"] > access["exp"], "the refresh token outlives the access token"

    user = Rest(http_url, token=body["token"]).get("/api/auth/user")
    assert user.status_code == 200, f"HTTP {user.status_code}: {user.text[:300]}"
    assert user.json().get("email") == email and user.json().get("authority") == authority, user.json()
