"""`imgtag review`'s server through real HTTP: the address with its token first, the JSON API's routes, and every
security rule (token, Host, JSON-only writes, images by id, CSP, hostile text as data)."""

from __future__ import annotations

import json

import pytest

from exportrows import HOSTILE
from reviewfix import ReviewServer, tagged_folder

HOSTILE_ANSWER = {**HOSTILE, "description": "<img src=x onerror=alert(1)>]]>"}  # within the 50-char limit


@pytest.fixture(scope="module")
def served(tmp_path_factory, request):
    # One tagged folder and one server for the module (each test's own requests stay independent).
    from _pytest.monkeypatch import MonkeyPatch
    from tests.fakes.anthropic_server import FakeAnthropicServer, FakeConfig

    tmp = tmp_path_factory.mktemp("review")
    answers = iter(range(1000))

    def respond(ctx):
        n = next(answers)
        body = HOSTILE_ANSWER if n == 0 else {"tags": ["t-shirt", f"tag{n}"], "category": "上衣",
                                         "description": f"shirt {n}", "color": "red", "style": "casual"}
        return {"text": json.dumps(body, ensure_ascii=False)}

    fake = FakeAnthropicServer(FakeConfig(respond=respond)).start()
    mp = MonkeyPatch()
    try:
        _, out, _ = tagged_folder(tmp, lambda **kw: fake, mp, n=3)
    finally:
        mp.undo()
        fake.stop()
    server = ReviewServer(out)
    yield server
    server.stop()


def test_first_line_is_the_address_and_ctrl_c_stops_with_one_line(tmp_path, fake_anthropic_factory, monkeypatch):
    _, out, _ = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=1)
    server = ReviewServer(out)
    assert server.first_line.startswith("http://127.0.0.1:") and "/?token=" in server.first_line
    assert len(server.token) >= 32
    code, stdout, stderr = server.stop()
    assert code == 0 and stdout.strip().splitlines() == ["imgtag review stopped"] and stderr == "", (stdout, stderr)


def test_every_route_needs_the_token(served):
    first = served.json("GET", "/api/images")["items"][0]["id"]
    routes = [("GET", "/"), ("GET", "/review.js"), ("GET", "/review.css"), ("GET", "/api/target"),
              ("GET", "/api/images"), ("GET", f"/api/images/{first}"), ("GET", f"/api/images/{first}/history"),
              ("GET", "/api/tags"), ("GET", f"/images/{first}/thumb"), ("GET", f"/images/{first}/original"),
              ("PATCH", f"/api/images/{first}"), ("POST", "/api/bulk"), ("POST", "/api/undo"),
              ("POST", f"/api/images/{first}/retry"), ("POST", f"/api/images/{first}/restore")]
    for method, path in routes:
        body = {} if method != "GET" else None
        assert served.request(method, path, body, token=False)[0] == 401, path
        wrong = {"Authorization": "Bearer " + "x" * len(served.token)}
        assert served.request(method, path, body, token=False, headers=wrong)[0] == 401, path
    # The page's cookie serves the page's own files and images, never the API (no cross-site request forgery).
    status, headers, _ = served.request("GET", f"/?token={served.token}", token=False)
    assert status == 200
    cookie = headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    jar = {"Cookie": cookie.split(";")[0]}
    assert served.request("GET", f"/images/{first}/thumb", token=False, headers=jar)[0] == 200
    assert served.request("GET", "/api/images", token=False, headers=jar)[0] == 401
    assert served.request("POST", "/api/bulk", {"op": "approve", "filter": {}}, token=False, headers=jar)[0] == 401


def test_a_foreign_host_header_is_refused(served):
    for host in ("evil.example:80", f"evil.example:{served.port}", "127.0.0.1", f"127.0.0.2:{served.port}"):
        status, _, _ = served.request("GET", "/api/images", headers={"Host": host})
        assert status == 403, host
    assert served.request("GET", "/api/images", headers={"Host": f"localhost:{served.port}"})[0] == 200


def test_writes_take_only_json_with_the_token(served):
    first = served.json("GET", "/api/images")["items"][0]["id"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert served.request("PATCH", f"/api/images/{first}", raw=b"reviewed=true", headers=form)[0] == 415
    plain = {"Content-Type": "text/plain"}
    assert served.request("POST", "/api/bulk", raw=b'{"op": "approve", "filter": {}}', headers=plain)[0] == 415
    foreign = {"Origin": "http://evil.example"}
    assert served.request("POST", "/api/bulk", {"op": "approve", "filter": {}}, headers=foreign)[0] == 403
    assert served.request("POST", "/api/bulk", raw=b"{not json", headers={"Content-Type": "application/json"})[0] == 400
    assert served.json("GET", "/api/images?reviewed=true")["total"] == 0  # nothing was approved by any of them


def test_images_are_served_by_id_only(served):
    items = served.json("GET", "/api/images")["items"]
    status, headers, body = served.request("GET", f"/images/{items[0]['id']}/thumb")
    assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    for path in ("/images/999999/thumb", "/images/../../../etc/passwd", "/images/%2e%2e%2fetc%2fpasswd/thumb",
                 "/images/abc/original", "/thumbs/../imgtag.db", "/imgtag.db", "/api/images/1%20OR%201=1"):
        status, _, body = served.request("GET", path)
        assert status == 404 and b"root:" not in body and b"SQLite" not in body, path


def test_csp_and_hostile_text_stays_data(served):
    status, headers, _ = served.request("GET", "/")
    assert status == 200 and "script-src 'self'" in headers["content-security-policy"]
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    status, headers, payload = served.request("GET", "/api/images?q=onerror")
    assert headers["content-type"].startswith("application/json") and "content-security-policy" in headers
    hostile = json.loads(payload)["items"]  # JSON, so markup in the text is a string, never HTML
    assert len(hostile) == 1 and hostile[0]["fields"]["tags"] == HOSTILE["tags"]
    hostile_id = hostile[0]["id"]
    rtl = "\u202eevil\u202c =1+2 ]]> <img src=x onerror=alert(1)>"
    item = served.json("PATCH", f"/api/images/{hostile_id}", {"fields": {"style": rtl}})
    assert item["fields"]["style"] == rtl and item["edited_fields"] == ["style"]


def test_api_routes(served):
    listing = served.json("GET", "/api/images?offset=0&limit=2&status=ok")
    assert listing["total"] == 3 and len(listing["items"]) == 2
    assert set(listing["items"][0]) >= {"id", "path", "status", "fields", "reviewed", "edited_fields", "error"}
    target = served.json("GET", "/api/target")
    assert [f["name"] for f in target["fields"]] == ["tags", "category", "description", "color", "style"]
    assert {"name": "description", "max_length": 50}.items() <= target["fields"][2].items()
    one = listing["items"][1]["id"]
    status, _, payload = served.request("PATCH", f"/api/images/{one}", {"fields": {"description": "x" * 51}})
    assert status == 422 and "longer than 50 characters" in json.loads(payload)["error"]
    item = served.json("PATCH", f"/api/images/{one}", {"fields": {"category": "裙子"}, "reviewed": True})
    assert item["reviewed"] and item["fields"]["category"] == "裙子" and item["edited_fields"] == ["category"]
    assert served.json("GET", f"/api/images/{one}") == {k: v for k, v in item.items() if k != "undo_id"}
    assert [v["kind"] for v in served.json("GET", f"/api/images/{one}/history")["versions"]] == ["model", "edit"]
    op = {"op": "rename_tag", "field": "tags", "from": "t-shirt", "to": "T恤", "filter": {"status": "ok"}}
    assert served.json("POST", "/api/bulk", {**op, "dry_run": True})["changed"] == 2
    done = served.json("POST", "/api/bulk", op)
    assert done["changed"] == 2 and {"tag": "T恤", "count": 2, "field": "tags"} in served.json("GET", "/api/tags")
    assert served.json("POST", "/api/undo", {"undo_id": done["undo_id"]})["changed"] == 2
    assert served.json("GET", "/api/images?tag=T%E6%81%A4")["total"] == 0
    assert served.json("POST", f"/api/images/{one}/retry", {})["queued"] is True
    status, _, payload = served.request("GET", "/api/images?status=bogus")
    assert status == 400 and "status must be one of" in json.loads(payload)["error"]


def test_only_loopback_is_quiet():
    from imgtag.review.serve import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.0.2.1", "::"))


def test_usage_errors_are_one_sentence(tmp_path, served, monkeypatch):
    from imagegen import one_sentence, run_cli

    code, output = run_cli(["review", "--out", str(tmp_path / "none"), "--no-browser"], {}, monkeypatch)
    assert code == 2 and "no imgtag store in" in one_sentence(output)
    out = served.proc.args[served.proc.args.index("--out") + 1]
    code, output = run_cli(["review", "--out", out, "--no-browser", "--port", str(served.port)], {}, monkeypatch)
    assert code == 2 and f"cannot listen on 127.0.0.1:{served.port}" in one_sentence(output), output
    code, output = run_cli(["review", "--out", out, "--no-browser", "--port", "70000"], {}, monkeypatch)
    assert code == 2 and "--port must be from 0 to 65535" in one_sentence(output)
