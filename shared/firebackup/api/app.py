"""The /v1 WSGI app (Flask): parse, authorize, call one service, respond. Built by create_app(...)."""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, request
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException

from firebackup import dashboard
from firebackup.api import limits
from firebackup.api.errors import error_response, service_error_response
from firebackup.api.limits import TtlSet
from firebackup.api.openapi import build_openapi
from firebackup.api.routes import ROUTES, Route
from firebackup.api.schemas import ApiRequest
from firebackup.db.models import AuditLog, Organization
from firebackup.engine.jobs import one_line
from firebackup.errors import TransientError
from firebackup.runtime.metrics import Metrics, PrometheusMetrics
from firebackup.services.context import Ctx, Ports
from firebackup.services.errors import NotFound, PermissionDenied, ServiceError, Unauthenticated
from firebackup.services.identity import authenticate, authorize

log = logging.getLogger("firebackup.api")
PREFIX = "/v1"
SessionFactory = sessionmaker[Session]
RETRY_AFTER_SECONDS = 5  # how long a 503 asks a client to wait before it tries again


def _clean_errors(e: ValidationError) -> list[dict[str, Any]]:
    # Never echo the input back: it may be a private key or a secret with one wrong character.
    return [{"loc": [str(x) for x in err["loc"]], "msg": err["msg"], "type": err["type"]} for err in e.errors()]


def _json(data: Any, status: int) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status=status, mimetype="application/json")


def create_app(ports: Ports, session_factory: SessionFactory) -> Flask:
    """The API as a Flask app; everything it talks to is passed in."""
    app = Flask("firebackup.api")
    app.config["MAX_CONTENT_LENGTH"] = ports.settings.max_request_bytes
    openapi = build_openapi(ROUTES, PREFIX)

    @app.get(PREFIX + "/openapi.json")
    def openapi_doc() -> Response:
        return _json(openapi, 200)

    limiter = limits.install(app, ports.settings)
    for route in ROUTES:
        rule = PREFIX + re.sub(r"\{(\w+)\}", r"<\1>", route.path)
        view = limits.per_token(limiter, ports.settings, _view(route, ports, session_factory))
        app.add_url_rule(rule, endpoint=f"{route.method} {route.path}", view_func=view, methods=[route.method])

    _add_metrics(app, ports.metrics)
    dashboard.install(app, ports.settings, [(r.method, r.path, r.role.name if r.role else None) for r in ROUTES])

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        code = re.sub(r"\W+", "_", (e.name or "error").lower()).strip("_")
        headers = e.get_headers() if e.code == 405 else None
        return error_response(e.code or 500, code, e.description or e.name, headers=headers)

    @app.errorhandler(TransientError)
    def unavailable(e: TransientError) -> Response:
        # The database at its limit (or a storage or KMS hiccup): the request's transaction was rolled
        # back whole, so asking again later is safe. Never a 500: nothing is wrong with the request.
        log.warning("%s %s -> 503: %s", request.method, request.path, one_line(e))
        return error_response(503, "unavailable", "the service is busy; retry after a few seconds",
                              headers=[("Retry-After", str(RETRY_AFTER_SECONDS))])

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> Response:
        # Type and frames only: an exception's message may carry a value we must not log.
        log.error("unhandled %s in %s %s\n%s", type(e).__name__, request.method, request.path,
                  "".join(traceback.format_tb(e.__traceback__)))
        return error_response(500, "internal", "internal error; the request was not applied")

    return app


def _add_metrics(app: Flask, metrics: Metrics) -> None:
    """Time every request by route template; serve /metrics when the adapter is scraped (Prometheus).

    /metrics needs no token: it holds counts and timings, and no tenant data beyond opaque ids
    (runtime/metrics.py says why those are acceptable). The "log" adapter writes its lines instead.
    """

    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def observe(response: Response) -> Response:
        started: float | None = g.get("request_started")
        if started is not None:
            metrics.request_served(_route_label(), str(response.status_code), time.perf_counter() - started)
        return response

    if isinstance(metrics, PrometheusMetrics):
        prometheus = metrics

        @app.get("/metrics")
        def scrape() -> Response:
            body, content_type = prometheus.exposition(request.headers.get("Accept"))
            return Response(body, status=200, content_type=content_type)


def _route_label() -> str:
    """The matched route's template ("GET /v1/orgs/{org_id}/backups"), or "unmatched".

    Never the raw path: ids (or anything a client invents) in a label would mint a series per value.
    The method is taken only from a matched rule, so it is one of the few that rule allows.
    """
    rule = request.url_rule
    if rule is None:
        return "unmatched"
    template = _RULE_PARAM.sub(r"{\1}", rule.rule)
    return f"{request.method} {template}"


_RULE_PARAM = re.compile(r"<(?:[^:<>]+:)?(\w+)>")


def _parse_body(route: Route) -> ApiRequest:
    if request.mimetype != "application/json":
        raise _Http(415, "unsupported_media_type", "send the body as application/json")
    raw = _body_bytes()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise _Http(400, "malformed_json", "the body is not valid JSON") from None
    bad = _bad_text(data)
    if bad:
        raise _Http(422, "invalid", "text must not contain NUL or unpaired surrogates", [{"loc": bad}])
    assert route.body is not None
    try:
        return route.body.model_validate(data)
    except ValidationError as e:
        raise _Http(422, "invalid", "the body does not match the schema", _clean_errors(e)) from None


def _body_bytes() -> bytes:
    """The request body, or 413 when it is over max_request_bytes, however it was sent.

    A body with Content-Length was checked against the limit before the view ran. A chunked one
    has no length: werkzeug's limited stream then stops reading at MAX_CONTENT_LENGTH and hands
    over the first bytes as if they were the whole body, so read one byte past the limit from
    the server's own (de-chunked) input and refuse rather than parse a cut body.
    """
    if request.content_length is not None:
        return request.get_data(cache=False)
    limit = int(current_app.config["MAX_CONTENT_LENGTH"])
    stream = request.environ["wsgi.input"]
    raw = bytearray()
    while len(raw) <= limit:
        piece = stream.read(limit + 1 - len(raw))
        if not piece:
            break
        raw += piece
    if len(raw) > limit:
        raise _Http(413, "request_too_large", f"the body is over {limit} bytes")
    return bytes(raw)


def _bad_text(value: Any, loc: tuple[Any, ...] = ()) -> list[str] | None:
    """Where a string holds NUL or a lone surrogate (PostgreSQL and UTF-8 refuse both), else None."""
    if isinstance(value, str):
        return [str(x) for x in loc] if _BAD_TEXT.search(value) else None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _bad_text(k, loc) or _bad_text(v, (*loc, k))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _bad_text(v, (*loc, i))
            if found is not None:
                return found
    return None


_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _parse_query(route: Route) -> ApiRequest:
    args = {k: v for k, v in request.args.items()}
    bad = _bad_text(args)
    if bad:
        raise _Http(422, "invalid", "text must not contain NUL or unpaired surrogates", [{"loc": ["query", *bad]}])
    assert route.query is not None
    try:
        return route.query.model_validate(args)
    except ValidationError as e:
        raise _Http(422, "invalid", "the query does not match the schema", _clean_errors(e)) from None


class _Http(Exception):
    """A refusal by the HTTP layer itself (malformed body, wrong media type), before any service runs."""

    def __init__(self, status: int, code: str, message: str, details: Any = None):
        self.status, self.code, self.message, self.details = status, code, message, details


def _view(route: Route, ports: Ports, session_factory: SessionFactory) -> Callable[..., Response]:
    def view(**path: str) -> Response:
        limit = ports.settings.max_request_bytes
        if request.content_length is not None and request.content_length > limit:
            return error_response(413, "request_too_large", f"the body is over {limit} bytes")
        with session_factory() as session:
            ctx = Ctx(session, ports, ip=request.remote_addr, user_agent=request.headers.get("User-Agent"))
            try:
                with session.begin():
                    resp = _run(route, ctx, path)
            except _Http as e:
                resp = error_response(e.status, e.code, e.message, e.details)
            except ServiceError as e:
                attempt = _denied_attempt(e, ctx, path)
                if attempt is not None:
                    _audit_denied(session_factory, ctx, route, *attempt)
                resp = service_error_response(e)
        log.info("%s %s%s -> %s actor=%s", route.method, PREFIX, route.path, resp.status_code,
                 ctx.principal.actor_id if ctx.principal else "-")
        return resp

    view.__name__ = route.operation_id
    return view


def _run(route: Route, ctx: Ctx, path: dict[str, str]) -> Response:
    ctx.principal = authenticate(ctx, request.headers.get("Authorization"))
    for name, value in path.items():
        if not _ID.fullmatch(value):
            raise _Http(404, "not_found", f"no such {name.removesuffix('_id')}")
    if route.role is not None:
        authorize(ctx, path["org_id"], route.role)
    args: list[Any] = [path[name] for name in route.params]
    if route.body is not None:
        args.append(_parse_body(route).to_command())
    if route.query is not None:
        args.append(_parse_query(route).to_command())
    result = route.handler(ctx, *args)
    if route.response is None:
        return Response(status=204)
    if route.paged:
        items, cursor = result
        result = {"items": items, "next_cursor": cursor}
    out = route.response.model_validate(result)
    return _json(out.model_dump(mode="json"), route.status)


def _denied_attempt(e: ServiceError, ctx: Ctx, path: dict[str, str]) -> tuple[str, str] | None:
    """(org id, why) when the error refused a caller's attempt on an organization, else None.

    A role too low (PermissionDenied, after authorize set ctx.org_id), a caller who is not a member
    (NotFound from authorize: ctx.org_id still unset), or no valid credentials at all.
    """
    if isinstance(e, PermissionDenied) and ctx.org_id:
        return ctx.org_id, "role"
    org_id = path.get("org_id")
    if org_id is None or not _ID.fullmatch(org_id) or ctx.org_id is not None:
        return None
    if isinstance(e, Unauthenticated):
        return org_id, "unauthenticated"
    if isinstance(e, NotFound) and ctx.principal is not None:
        return org_id, "not a member"
    return None


_audit_throttle = TtlSet(seconds=60.0, max_size=10_000)


def _audit_denied(session_factory: SessionFactory, ctx: Ctx, route: Route, org_id: str, why: str) -> None:
    """A refused attempt is recorded in that organization's log, in its own transaction (the request's
    was rolled back); at most once a minute per (org, caller, address, reason, operation) and process, so
    a flood of attempts cannot flood the log. Attempts on an organization that does not exist are not recorded."""
    if not _audit_throttle.add((org_id, ctx.actor_id, ctx.ip, why, route.operation_id)):
        return
    with session_factory() as session, session.begin():
        if session.get(Organization, org_id) is None:
            return
        p = ctx.principal
        session.add(AuditLog(org_id=org_id, actor_type=p.kind if p else "anonymous", actor_id=ctx.actor_id,
                             action="access.denied", resource_type=None, resource_id=None,
                             ip=ctx.ip, user_agent=(ctx.user_agent or "")[:512] or None, result="denied",
                             details={"operation": route.operation_id, "method": route.method, "route": route.path,
                                      "reason": why}))
