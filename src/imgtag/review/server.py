"""The review server: the JSON API (docs/review.md), the page and the images, behind the security rules.

- Host: a request whose Host header is not the address served gets 403 (DNS rebinding), before anything else.
- Token: every route answers 401 without it. The API takes it only as `Authorization: Bearer TOKEN`; the page is
  opened with `?token=` and keeps it in an HttpOnly, SameSite=Strict cookie, which serves the page's own script,
  style and images (an <img> cannot send a header) and never the API.
- Writes take only JSON (415 otherwise) with the token header, and a foreign Origin gets 403: no form post and
  no other site's script can write.
- Images are served by id from the store, never by a path from the request.
- Every response carries the Content-Security-Policy (the page's own script and style only, images from here),
  nosniff, no referrer and no framing.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgtag.review.service import Review, ReviewError

COOKIE = "imgtag_review"
MAX_BODY = 8 * 1024 * 1024  # a bulk operation's id list of 100,000 images is under 1 MB
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
                    "referrer-policy": "no-referrer", "x-frame-options": "DENY", "cache-control": "no-store"}
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Originals a browser shows as they are; any other format is shown as its thumbnail.
_BROWSER_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}


def allowed_hosts(host: str, port: int) -> set[str]:
    """The Host header values this server answers: its own address (and localhost for a loopback address)."""
    names = {host}
    if host in ("127.0.0.1", "::1", "localhost"):
        names |= {"127.0.0.1", "localhost", "[::1]"}
    if ":" in host and not host.startswith("["):
        names.add(f"[{host}]")
    return {f"{name}:{port}" for name in names}


class Guard:
    """ASGI middleware enforcing the Host, token and JSON-only-writes rules, and adding the security headers."""

    def __init__(self, app: ASGIApp, token: str, hosts: set[str]) -> None:
        self.app = app
        self.token = token
        self.hosts = hosts

    def _ok(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.token.encode())  # type: ignore[union-attr]

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        if headers.get("host") not in self.hosts:
            return PlainTextResponse("this server answers only at its own address", 403)
        path: str = scope["path"]
        bearer = headers.get("authorization", "")
        by_header = bearer.startswith("Bearer ") and self._ok(bearer[7:].strip())
        cookie = _cookie(headers.get("cookie", ""), COOKIE)
        if path.startswith("/api/"):
            allowed = by_header
        elif path == "/":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            allowed = by_header or self._ok(cookie) or self._ok((query.get("token") or [""])[0])
        else:
            allowed = by_header or self._ok(cookie)
        if not allowed:
            return JSONResponse({"error": "a valid token is needed (open the address imgtag review printed)"}, 401)
        if scope["method"] in _WRITES:
            origin = headers.get("origin")
            if origin and origin.split("://", 1)[-1] not in self.hosts:
                return JSONResponse({"error": "requests from other sites are refused"}, 403)
            if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
                return JSONResponse({"error": "writes take a JSON body (Content-Type: application/json)"}, 415)
            if int(headers.get("content-length") or 0) > MAX_BODY:
                return JSONResponse({"error": f"the body is larger than {MAX_BODY // 1024 // 1024} MB"}, 413)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, secured)
            return
        await self.app(scope, receive, secured)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _asset(name: str) -> str:
    return (resources.files("imgtag.review") / "page" / name).read_text(encoding="utf-8")


def create_app(review: Review, out_dir: Path, token: str, hosts: set[str]) -> ASGIApp:
    """The ASGI application for one target's review."""

    async def call(fn: Callable[[], Any], status: int = 200) -> Response:
        try:
            result = await run_in_threadpool(review.locked, fn)
        except ReviewError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        return JSONResponse(result, status)

    async def body(request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise ReviewError(400, "the body is not valid JSON") from None

    def with_body(handler: Callable[[Request, Any], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                data = await body(request)
            except ReviewError as exc:
                return JSONResponse({"error": str(exc)}, exc.status)
            return await handler(request, data)
        return endpoint

    def image_id(request: Request) -> int:
        return int(request.path_params["id"])

    async def page(request: Request) -> Response:
        response = Response(_asset("review.html"), media_type="text/html; charset=utf-8")
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    async def script(request: Request) -> Response:
        return Response(_asset("review.js"), media_type="text/javascript; charset=utf-8")

    async def style(request: Request) -> Response:
        return Response(_asset("review.css"), media_type="text/css; charset=utf-8")

    async def target(request: Request) -> Response:
        meta = review.meta
        return JSONResponse({"preset": meta.get("preset_name"), "model": meta.get("model"),
                             "provider": meta.get("provider"), "lang": meta.get("lang"), "out": str(out_dir),
                             "fields": [s.as_json() for s in review.fields.specs.values()]})

    async def images(request: Request) -> Response:
        return await call(lambda: review.list(dict(request.query_params)))

    async def one(request: Request) -> Response:
        return await call(lambda: review.item(image_id(request)))

    async def patch(request: Request, data: Any) -> Response:
        return await call(lambda: review.patch(image_id(request), data))

    async def history(request: Request) -> Response:
        return await call(lambda: review.history(image_id(request)))

    async def restore(request: Request, data: Any) -> Response:
        version = data.get("version") if isinstance(data, dict) else None
        return await call(lambda: review.restore(image_id(request), version))

    async def retry(request: Request, data: Any) -> Response:
        return await call(lambda: review.queue_retry(image_id(request)))

    async def bulk(request: Request, data: Any) -> Response:
        return await call(lambda: review.bulk(data))

    async def undo(request: Request, data: Any) -> Response:
        return await call(lambda: review.undo(data))

    async def tags(request: Request) -> Response:
        return await call(lambda: review.tags(request.query_params.get("field")))

    async def thumb(request: Request) -> Response:
        from imgtag.export.contact_sheet import ensure_thumb

        row = await run_in_threadpool(review.locked, lambda: review.file_row(image_id(request)))
        if row is None:
            return JSONResponse({"error": "no such image"}, 404)
        made = await run_in_threadpool(ensure_thumb, out_dir, os.fsdecode(row["path"]), row["sha256"])
        if made is None:
            return JSONResponse({"error": "no thumbnail for this file"}, 404)
        return FileResponse(made, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"})

    async def original(request: Request) -> Response:
        row = await run_in_threadpool(review.locked, lambda: review.file_row(image_id(request)))
        if row is None:
            return JSONResponse({"error": "no such image"}, 404)
        kind = _BROWSER_TYPES.get((row["format"] or "").lower())
        path = os.fsdecode(row["path"])
        if kind is None or not os.path.isfile(path):
            return await thumb(request)
        return FileResponse(path, media_type=kind, headers={"cache-control": "private, max-age=60"})

    routes = [
        Route("/", page), Route("/review.js", script), Route("/review.css", style),
        Route("/api/target", target),
        Route("/api/images", images),
        Route("/api/images/{id:int}", one, methods=["GET"]),
        Route("/api/images/{id:int}", with_body(patch), methods=["PATCH"]),
        Route("/api/images/{id:int}/history", history),
        Route("/api/images/{id:int}/restore", with_body(restore), methods=["POST"]),
        Route("/api/images/{id:int}/retry", with_body(retry), methods=["POST"]),
        Route("/api/bulk", with_body(bulk), methods=["POST"]),
        Route("/api/undo", with_body(undo), methods=["POST"]),
        Route("/api/tags", tags),
        Route("/images/{id:int}/thumb", thumb),
        Route("/images/{id:int}/original", original),
    ]
    return Guard(Starlette(routes=routes), token, hosts)
