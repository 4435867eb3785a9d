"""Suppression and consent endpoints: the CLI's semantics over HTTP.

Targets and addresses are normalized as `smtp-gateway suppress|consent` does
(gateway.policy.addresses.normalize_target, with the running policy's plus_tags
setting), scopes and categories are checked against the running consent.yaml,
and each change is written with its audit row in one transaction by the same
stores (actor "api:<token name>").
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.admin.context import actor, context, int_param, limit_param, query_param
from gateway.admin.errors import ApiError, json_body, json_response
from gateway.core.yamlnodes import parse_duration
from gateway.errors import ConfigError
from gateway.model import CONSENT_PURPOSES, ConsentRecord, Suppression, SuppressionReason
from gateway.policy.addresses import normalize_address, normalize_target
from gateway.state.retention import erase_address

__all__ = ["add_policy_routes"]

_METHODS = ("explicit", "implicit", "imported")


def add_policy_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/suppressions", list_suppressions, name="suppressions.list", allow_head=False)
    r.add_post("/v1/suppressions", add_suppression, name="suppressions.add")
    r.add_get("/v1/suppressions/{target}", get_suppression, name="suppressions.get",
              allow_head=False)
    r.add_delete("/v1/suppressions/{target}", remove_suppression, name="suppressions.remove")
    r.add_get("/v1/consent", list_consent, name="consent.list", allow_head=False)
    r.add_post("/v1/consent", record_consent, name="consent.record")
    r.add_get("/v1/consent/{address}", get_consent, name="consent.get", allow_head=False)
    r.add_get("/v1/audit", list_audit, name="audit.list", allow_head=False)
    r.add_post("/v1/erasure", erase, name="erasure")


# -- suppressions ---------------------------------------------------------------------------


def _suppression(s: Suppression) -> dict[str, Any]:
    out = asdict(s)
    out["reason"] = s.reason.value
    return out


def _target(request: web.Request, text: str) -> str:
    strip, _ = context(request).policy_settings()
    try:
        return normalize_target(text, strip)
    except ValueError as exc:
        raise ApiError(400, "bad_target", str(exc)) from None


async def list_suppressions(request: web.Request) -> web.Response:
    ctx = context(request)
    limit = limit_param(request)
    after_target, _, after_scope = (query_param(request, "after") or "").partition(" ")
    rows = await ctx.gateway.state.suppressions.page((after_target, after_scope), limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = f"{rows[-1].target} {rows[-1].scope}" if more else None
    return json_response({"items": [_suppression(s) for s in rows], "next": cursor})


async def get_suppression(request: web.Request) -> web.Response:
    ctx = context(request)
    target = _target(request, request.match_info["target"])
    entries = await ctx.gateway.state.suppressions.lookup((target,), ctx.now())
    if not entries:
        raise ApiError(404, "not_found", f"{target} is not suppressed")
    return json_response({"target": target,
                          "items": [_suppression(s) for s in sorted(entries,
                                                                    key=lambda e: e.scope)]})


def _opt_str(data: dict[str, Any], key: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ApiError(422, "invalid", f"'{key}' must be a string")
    return value


def _expires(data: dict[str, Any], now: float) -> float | None:
    expires, ttl = data.get("expires"), data.get("ttl")
    try:
        if "expires" in data and "ttl" in data:
            raise ValueError("give 'expires' or 'ttl', not both")
        if "expires" in data:
            if not isinstance(expires, str):
                raise ValueError("'expires' must be an ISO 8601 date/time string")
            when = datetime.fromisoformat(expires)
            return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
        if "ttl" in data:
            if not isinstance(ttl, (str, int, float)) or isinstance(ttl, bool):
                raise ValueError("'ttl' must be a duration such as 7d")
            return now + parse_duration(ttl)
    except ValueError as exc:
        raise ApiError(422, "invalid", str(exc)) from None
    return None


async def add_suppression(request: web.Request) -> web.Response:
    ctx = context(request)
    data = await json_body(request)
    _unknown_keys(data, {"target", "scope", "reason", "expires", "ttl", "note"})
    if not isinstance(data.get("target"), str):
        raise ApiError(422, "invalid", "'target' (an address or @domain) is required")
    try:
        target = normalize_target(data["target"], ctx.policy_settings()[0])
    except ValueError as exc:
        raise ApiError(422, "invalid", str(exc)) from None
    scope = _opt_str(data, "scope", "all")
    categories = ctx.policy_settings()[1].categories
    if scope != "all" and scope not in categories:
        raise ApiError(422, "invalid", f"unknown scope '{scope}' (all, or one of: "
                       f"{', '.join(categories)})")
    reason_text = _opt_str(data, "reason", "manual")
    try:
        reason = SuppressionReason(reason_text)
    except ValueError:
        raise ApiError(422, "invalid", f"'reason' must be one of: "
                       f"{', '.join(r.value for r in SuppressionReason)}") from None
    now = ctx.now()
    who = actor(request)
    entry = Suppression(target, reason, scope, now, who, _expires(data, now),
                        _opt_str(data, "note", ""))
    await ctx.gateway.state.suppressions.add([entry], who, now)
    return json_response(_suppression(entry), 201)


async def remove_suppression(request: web.Request) -> web.Response:
    ctx = context(request)
    target = _target(request, request.match_info["target"])
    scope = query_param(request, "scope") or None
    count = await ctx.gateway.state.suppressions.remove(target, scope, actor(request),
                                                        ctx.now())
    if not count:
        raise ApiError(404, "not_found", f"no suppression for {target}"
                       + (f" with scope {scope}" if scope else ""))
    return json_response({"target": target, "scope": scope or "*", "removed": count})


# -- erasure --------------------------------------------------------------------------------


async def erase(request: web.Request) -> web.Response:
    """GDPR erasure, as `smtp-gateway erase` (gateway.state.retention): the address leaves
    events, consent, audit and tags; its keyed hash keeps any suppression in force."""
    data = await json_body(request)
    _unknown_keys(data, {"address"})
    address = data.get("address")
    if not isinstance(address, str) or not address:
        raise ApiError(422, "bad_address", "address: a string is required")
    try:
        report = await erase_address(context(request).gateway.state, address, actor(request))
    except ValueError as exc:
        raise ApiError(422, "bad_address", str(exc)) from None
    except ConfigError as exc:  # this node's erasure key is not the other nodes'
        raise ApiError(409, "erasure_key_mismatch", str(exc)) from None
    return json_response(report.as_dict())


# -- consent --------------------------------------------------------------------------------


def _consent(r: ConsentRecord) -> dict[str, Any]:
    out = asdict(r)
    out["status"] = "granted" if r.granted else "withdrawn"
    return out


async def list_consent(request: web.Request) -> web.Response:
    ctx = context(request)
    limit = limit_param(request)
    after = int_param(request, "after", 0)
    rows = await ctx.gateway.state.consent.page(after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return json_response({"items": [{"seq": seq, **_consent(r)} for seq, r in rows],
                          "next": str(rows[-1][0]) if more else None})


async def get_consent(request: web.Request) -> web.Response:
    ctx = context(request)
    address = normalize_address(request.match_info["address"])
    history = await ctx.gateway.state.consent.history(address)
    if not history:
        raise ApiError(404, "not_found", f"no consent records for {address}")
    current: dict[str, dict[str, Any]] = {}
    for r in history:
        current[r.category] = _consent(r)
    return json_response({"address": address, "current": current,
                          "history": [_consent(r) for r in history]})


async def record_consent(request: web.Request) -> web.Response:
    ctx = context(request)
    data = await json_body(request)
    _unknown_keys(data, {"address", "category", "status", "method", "source", "purposes"})
    if not isinstance(data.get("address"), str):
        raise ApiError(422, "invalid", "'address' is required")
    categories = ctx.policy_settings()[1].categories
    category = _opt_str(data, "category", "")
    if category not in categories:
        raise ApiError(422, "invalid", f"unknown category '{category}' (one of: "
                       f"{', '.join(categories)})")
    status = _opt_str(data, "status", "")
    if status not in ("granted", "withdrawn"):
        raise ApiError(422, "invalid", "'status' must be granted or withdrawn")
    method = _opt_str(data, "method", "explicit")
    if method not in _METHODS:
        raise ApiError(422, "invalid", f"'method' must be one of: {', '.join(_METHODS)}")
    try:
        address = normalize_target(data["address"], False)
    except ValueError as exc:
        raise ApiError(422, "invalid", str(exc)) from None
    if address.startswith("@"):
        raise ApiError(422, "invalid", "consent is recorded for an address, not a domain")
    now = ctx.now()
    record = ConsentRecord(address, category, status == "granted", now, method,
                           _opt_str(data, "source", ""), _purposes(data))
    await ctx.gateway.state.consent.record([record], actor(request), now)
    return json_response(_consent(record), 201)


def _purposes(data: dict[str, Any]) -> tuple[str, ...]:
    """`purposes`: a list of CONSENT_PURPOSES (e.g. ["tracking"]), absent: none."""
    value = data.get("purposes", [])
    if not isinstance(value, list) or any(p not in CONSENT_PURPOSES for p in value):
        raise ApiError(422, "invalid", "'purposes' must be a list of: "
                       f"{', '.join(CONSENT_PURPOSES)}")
    return tuple(dict.fromkeys(value))


async def list_audit(request: web.Request) -> web.Response:
    ctx = context(request)
    entries = await ctx.gateway.state.audit.entries(limit_param(request))
    return json_response({"items": [asdict(e) for e in entries]})


def _unknown_keys(data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ApiError(422, "invalid", f"unknown field(s): {', '.join(unknown)}")
