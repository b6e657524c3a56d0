"""'Retry this image' from the review page queues it for `imgtag retry`, which asks the model again: the new answer
becomes the model's newest version (the old one stays in the history) and the fields a person edited stay
current. The page itself never sends a request."""

from __future__ import annotations

import json

from imagegen import read_jsonl, run_cli
from reviewfix import answer, open_review, tagged_folder


def test_a_queued_image_is_asked_again_and_edits_stay(tmp_path, fake_anthropic_factory, monkeypatch):
    _, out, _ = tagged_folder(tmp_path, fake_anthropic_factory, monkeypatch, n=3)
    store, review = open_review(out)
    items = review.list({})["items"]
    target = items[0]["id"]
    review.patch(target, {"fields": {"category": "裙子"}, "reviewed": True})
    before = review.item(target)["fields"]
    assert review.queue_retry(target)["queued"] is True
    requests = store.db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
    assert requests == 3  # queueing asked nothing
    store.close()

    fake = fake_anthropic_factory(respond=lambda ctx: {"text": json.dumps(answer(99), ensure_ascii=False)})
    code, output = run_cli(["retry", "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    assert "retrying 1 image (queued in review 1)" in output, output

    store, review = open_review(out)
    assert store.db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 4  # exactly the queued image
    now = review.item(target)
    assert now["fields"]["category"] == "裙子" and now["edited_fields"] == ["category"] and now["reviewed"]
    assert now["fields"]["description"] == answer(99)["description"] != before["description"]
    assert now["queued"] is False
    history = review.history(target)["versions"]
    assert [v["kind"] for v in history] == ["model", "edit", "model"]
    assert history[0]["fields"]["description"] == before["description"]
    assert history[2]["fields"]["description"] == answer(99)["description"]
    store.close()
    rows = {r["path"]: r for r in read_jsonl(out / "results.jsonl")}
    assert rows[items[0]["path"]]["fields"]["category"] == "裙子"

    # Nothing queued any more: a second retry asks nothing.
    code, output = run_cli(["retry", "--out", str(out), "-q"], fake.env(), monkeypatch)
    assert code == 0 and "no failures to retry" in output, output
