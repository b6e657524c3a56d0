"""`--provider openai` end to end: the real CLI, the official SDK and a fake OpenAI-compatible server on loopback
behaving like vLLM, LM Studio, llama-server, Ollama and OpenAI, on real photos from the corpus. Every result
must describe its own image: the fake answers with the mean colour of the exact bytes it received."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from tests.fakes.anthropic_server import image_key
from typer.testing import CliRunner

from conftest import PHOTOS
from imgtag.cli.commands import app
from imgtag.config.runconfig import RunConfig
from imgtag.ingest.preprocess import prepare
from imgtag.providers import resolve_target
from imgtag.providers.openai_provider import OpenAIProvider
from imgtag.request.template import prepare_template

PHOTO_NAMES = ["clothing_dress_4e788cda.jpg", "clothing_hat_75eacbac.jpg", "clothing_shoes_4dc09b5c.jpg",
               "coral_face.jpg", "darknet_dog.jpg", "darknet_eagle.jpg"]  # all in the vendored tests/corpus


def photos(folder: Path, names: list[str] = PHOTO_NAMES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(PHOTOS / name, folder / name)
    return folder


def expected_keys(folder: Path, model: str, provider: str = "openai") -> dict[str, str]:
    """The fake's key for each file: the mean colour of exactly the bytes imgtag prepares for this model."""
    cfg = RunConfig(inputs=[str(folder)], out=folder, provider=provider, model=model,
                    provider_settings={"base_url": "http://127.0.0.1:1/v1"})
    template = prepare_template(cfg, resolve_target(cfg), encode=True)
    keys = {}
    for path in sorted(folder.iterdir()):
        report = prepare(dataclasses.replace(template, path=str(path)))
        assert report.encoded is not None, report.reason
        keys[path.name] = image_key(report.encoded)
    return keys


def cli(args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    return result.exit_code, result.output


def results(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {Path(r["path"]).name: r for r in rows}


def assert_every_result_on_its_own_image(out: Path, keys: dict[str, str]) -> None:
    rows = results(out)
    assert set(rows) == set(keys)
    assert len(set(keys.values())) == len(keys), "test photos must differ in mean colour"
    for name, row in rows.items():
        assert row["status"] == "ok", row
        assert row["fields"]["color"] == keys[name], (name, row["fields"])
        assert keys[name] in row["fields"]["description"]


VARIANTS = {
    "vllm": {"variant": "vllm"},
    "lmstudio": {"variant": "lmstudio"},
    "llamacpp": {"variant": "llamacpp"},
    "ollama": {"variant": "ollama", "slots": 1, "max_queue": 2},
    "reasoning-tags": {"variant": "vllm", "reasoning": "tags", "think_tokens": 1500},
    "reasoning-field": {"variant": "vllm", "reasoning": "field", "think_tokens": 1500},
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_local_server_variant_on_real_photos(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  fake_openai_factory) -> None:
    monkeypatch.chdir(tmp_path)
    fake = fake_openai_factory(latency_s=0.05, **VARIANTS[name])
    folder = photos(tmp_path / "in")
    keys = expected_keys(folder, "glm-4v-9b")
    out = tmp_path / "out"
    code, output = cli(["run", str(folder), "--out", str(out), "--provider", "openai", "--model", "glm-4v-9b",
                        "--format", "jsonl", "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    assert "Traceback" not in output
    assert_every_result_on_its_own_image(out, keys)
    log = fake.stats.request_log
    assert {entry["image_format"] for entry in log} == {"JPEG"}  # never WebP
    assert not any(entry["authorization"] is False for entry in log)
    assert all(entry["temperature"] == 0.1 for entry in log)  # a low temperature for local servers
    formats = fake.stats.response_formats
    if name == "lmstudio":
        assert set(formats) == {"json_schema"}
    if name == "llamacpp":
        # Probing is cheap (a 400 is not billed) and stops at the first acceptance.
        assert formats["json_object"] == len(keys) and 1 <= formats["json_schema"] <= 4
    if name.startswith("reasoning"):
        # First answer truncated by thinking, then asked once with a larger limit.
        assert [e["max_tokens"] for e in log].count(2048) == len(keys)
    summary = json.loads(cli(["status", "--out", str(out), "--json"], {}, monkeypatch)[1])
    assert summary["cost_usd"] is None  # glm-4v-9b has no prices: unknown, on the user's own machine too


def test_openai_rate_limit_headers_strict_schema_and_usage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           fake_openai_factory) -> None:
    monkeypatch.chdir(tmp_path)
    fake = fake_openai_factory(variant="openai", api_key="sk-test-right", models=("gpt-4.1-mini",), rpm=120,
                               retry_after_s=1, cached_tokens=40, latency_s=0.05)
    folder = photos(tmp_path / "in")
    keys = expected_keys(folder, "gpt-4.1-mini")
    out = tmp_path / "out"
    code, output = cli(["run", str(folder), "--out", str(out), "--provider", "openai", "--model", "gpt-4.1-mini",
                        "--format", "jsonl", "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    assert_every_result_on_its_own_image(out, keys)
    assert set(fake.stats.response_formats) == {"json_schema"}  # the strict schema passed OpenAI's checks
    db = sqlite3.connect(out / "imgtag.db")
    cache_read, cost = db.execute("SELECT SUM(cache_read_input_tokens), SUM(cost_usd) FROM attempts"
                                  " WHERE outcome='ok'").fetchone()
    db.close()
    assert cache_read == 40 * len(keys)
    assert cost > 0  # priced from the catalogue


def test_rate_limited_openai_absorbs_429s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          fake_openai_factory) -> None:
    monkeypatch.chdir(tmp_path)
    fake = fake_openai_factory(variant="openai", api_key="sk-x", models=("gpt-4.1-mini",), rpm=60, retry_after_s=1)
    folder = photos(tmp_path / "in", PHOTO_NAMES[:4])
    code, output = cli(["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai",
                        "--model", "gpt-4.1-mini", "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    assert fake.stats.answered == 4
    # The first requests go out together before any rate-limit header is known: some meet a 429, and each is
    # asked again after its retry-after, never recorded as a failure.
    assert fake.stats.status_counts[429] >= 1, fake.stats.status_counts


def test_rerun_starts_from_the_remembered_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               fake_openai_factory) -> None:
    monkeypatch.chdir(tmp_path)
    fake = fake_openai_factory(variant="llamacpp")
    folder = photos(tmp_path / "in", PHOTO_NAMES[:2])
    args = ["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai", "--model", "glm-4v-9b", "-q"]
    assert cli(args, fake.env(), monkeypatch)[0] == 0
    db = sqlite3.connect(tmp_path / "out" / "imgtag.db")
    (caps,) = db.execute("SELECT caps FROM server_caps WHERE base_url = ? AND model = 'glm-4v-9b'",
                         (fake.base_url,)).fetchone()
    db.close()
    assert json.loads(caps)["response_format"] == "json_object_schema"  # llama-server's form of a schema
    photos(folder, PHOTO_NAMES[2:4])
    before = len(fake.stats.request_log)
    assert cli(args, fake.env(), monkeypatch)[0] == 0
    assert [e["response_format"] for e in fake.stats.request_log[before:]] == ["json_object+schema"] * 2


def test_schema_rejected_then_json_object_rejected_falls_back_to_instructions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_openai_factory) -> None:
    # An LM Studio whose schema support fails on this schema: json_schema and json_object both refused.
    monkeypatch.chdir(tmp_path)
    fake = fake_openai_factory(variant="lmstudio", reject_schema=True, output_mode="prose")
    folder = photos(tmp_path / "in", PHOTO_NAMES[:3])
    keys = expected_keys(folder, "glm-4v-9b")
    code, output = cli(["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai",
                        "--model", "glm-4v-9b", "--format", "jsonl", "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    assert_every_result_on_its_own_image(tmp_path / "out", keys)  # prose-wrapped JSON, extracted and validated
    assert fake.stats.response_formats["text"] == 3


def test_busy_server_and_dropped_connections_are_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         fake_openai_factory) -> None:
    monkeypatch.chdir(tmp_path)
    fake = fake_openai_factory(variant="ollama", p_503=0.3, p_drop=0.15, seed=3)
    folder = photos(tmp_path / "in", PHOTO_NAMES[:4])
    keys = expected_keys(folder, "glm-4v-9b")
    code, output = cli(["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai",
                        "--model", "glm-4v-9b", "--format", "jsonl", "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    assert_every_result_on_its_own_image(tmp_path / "out", keys)
    assert fake.stats.status_counts[503] + fake.stats.status_counts[0] > 0


def test_a_400_about_one_image_is_a_recorded_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     fake_openai_factory) -> None:
    monkeypatch.chdir(tmp_path)
    folder = photos(tmp_path / "in", PHOTO_NAMES[:3])
    keys = expected_keys(folder, "glm-4v-9b")
    bad = PHOTO_NAMES[1]
    fake = fake_openai_factory(variant="vllm", mode_overrides={keys[bad]: "error:400"})
    code, output = cli(["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai",
                        "--model", "glm-4v-9b", "--format", "jsonl", "-q"], fake.env(), monkeypatch)
    assert code == 1, output
    rows = results(tmp_path / "out")
    assert rows[bad]["status"] == "failed" and "Invalid image" in rows[bad]["error"]["message"]
    assert all(rows[n]["status"] == "ok" for n in rows if n != bad)


@pytest.mark.parametrize(("fields", "model", "env_key", "expect"), [
    ({"variant": "openai", "api_key": "sk-right", "models": ("gpt-4.1-mini",)}, "gpt-4.1-mini", "sk-wrong-key",
     "OPENAI_API_KEY"),
    ({"variant": "vllm"}, "no-such-model", None, "unknown model"),
    ({"variant": "lmstudio", "vision": False}, "glm-4v-9b", None, "does not accept images"),
    ({"variant": "llamacpp", "vision": False}, "glm-4v-9b", None, "does not accept images"),
])
def test_fatal_configuration_errors_exit_2_in_one_sentence(fields: dict, model: str, env_key: str | None,
                                                           expect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           fake_openai_factory) -> None:
    monkeypatch.chdir(tmp_path)
    fake = fake_openai_factory(**fields)
    env = {"OPENAI_BASE_URL": fake.base_url} | ({"OPENAI_API_KEY": env_key} if env_key else {})
    folder = photos(tmp_path / "in")
    code, output = cli(["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai",
                        "--model", model, "-q"], env, monkeypatch)
    assert code == 2, output
    assert expect in output and "Traceback" not in output
    assert "sk-wrong-key" not in output
    assert fake.stats.requests <= 8  # the run stops; it does not try every image


def test_no_key_and_no_base_url_is_exit_2_before_any_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = photos(tmp_path / "in", PHOTO_NAMES[:1])
    code, output = cli(["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai"], {}, monkeypatch)
    assert code == 2
    assert output.strip().count("\n") == 0 and "OPENAI_API_KEY" in output and "--base-url" in output


def test_base_url_flag_and_no_key_for_a_local_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     fake_openai_factory) -> None:
    monkeypatch.chdir(tmp_path)
    fake = fake_openai_factory(variant="vllm", models=("qwen2.5-vl",))
    folder = photos(tmp_path / "in", PHOTO_NAMES[:2])
    code, output = cli(["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai",
                        "--base-url", fake.base_url, "--model", "qwen2.5-vl"], {}, monkeypatch)
    assert code == 0, output
    # An unpriced model on the user's own machine is not assumed free (it may be a gateway to a paid API).
    assert "cost unknown" in output and "$0" not in output


def test_user_model_in_imgtag_toml_sets_price_and_image_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              fake_openai_factory) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgtag.toml").write_text('[models."my-vlm"]\ninput = 1.0\noutput = 2.0\nmax_edge = 300\n')
    fake = fake_openai_factory(variant="vllm", models=("my-vlm",))
    folder = photos(tmp_path / "in", PHOTO_NAMES[:2])
    code, output = cli(["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai",
                        "--model", "my-vlm", "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    db = sqlite3.connect(tmp_path / "out" / "imgtag.db")
    cost = db.execute("SELECT SUM(cost_usd) FROM attempts").fetchone()[0]
    db.close()
    sizes = [entry["image_size"] for entry in fake.stats.request_log]  # what the server decoded
    assert len(sizes) == 2 and all(250 < max(w, h) <= 300 for w, h in sizes), sizes
    assert cost > 0


def test_resolve_model_prices_no_unknown_model_wherever_the_server_is() -> None:
    from imgtag.pricing.catalogue import catalogue

    for model in ("some-model", "glm-4v-9b"):
        for url in ("http://127.0.0.1:8000/v1", "http://192.168.1.20:8000/v1", "https://openrouter.ai/api/v1"):
            assert OpenAIProvider.resolve_model(catalogue().get(model), {"base_url": url}).prices is None


def test_kill_nine_then_rerun_asks_nothing_twice(tmp_path: Path, fake_openai_factory) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    names = sorted(p.name for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[:16]
    folder = photos(tmp_path / "in", names)
    keys = expected_keys(folder, "glm-4v-9b")
    fake = fake_openai_factory(variant="vllm", latency_s=0.3, slots=2)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "imgtag", "run", str(folder), "--out", str(out), "--provider", "openai",
            "--model", "glm-4v-9b", "--format", "jsonl", "-q"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))} | fake.env()

    def committed() -> int:
        if not (out / "imgtag.db").exists():
            return 0
        db = sqlite3.connect(out / "imgtag.db")
        try:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE status='ok'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0
        finally:
            db.close()

    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while fake.stats.answered < 5 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    fake.wait_idle()  # the server finishes what was in flight; those answers never reached the store
    in_flight_at_kill = fake.stats.answered - committed()
    assert 0 <= in_flight_at_kill <= 8
    done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert_every_result_on_its_own_image(out, keys)
    asked_twice = sum(n - 1 for n in fake.stats.answered_by_key.values())
    assert asked_twice <= in_flight_at_kill
    assert fake.stats.answered <= len(keys) + in_flight_at_kill


def test_a_broken_model_entry_in_imgtag_toml_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgtag.toml").write_text('[models."my-vlm"]\ninput = "cheap"\n')
    folder = photos(tmp_path / "in", PHOTO_NAMES[:1])
    code, output = cli(["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai",
                        "--base-url", "http://127.0.0.1:9/v1", "--model", "my-vlm"], {}, monkeypatch)
    assert code == 2 and "Traceback" not in output
    assert 'imgtag.toml: [models."my-vlm"]: input must be a number' in output


def test_dry_run_with_an_unknown_model_says_the_token_count_is_unknown(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = photos(tmp_path / "in", PHOTO_NAMES[:2])
    code, output = cli(["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai",
                        "--base-url", "https://gateway.example.com/v1", "--model", "mystery-vlm", "--dry-run"],
                       {}, monkeypatch)
    assert code == 0, output
    assert "an unknown number of input" in output and "estimated unknown standard" in output
    code, output = cli(["run", str(folder), "--out", str(tmp_path / "out2"), "--provider", "openai",
                        "--model", "gpt-4.1-mini", "--dry-run"], {"OPENAI_API_KEY": "sk-unused"}, monkeypatch)
    assert code == 0, output
    assert "unknown" not in output and "$0.0" in output


def test_retry_reaches_the_same_base_url_without_credentials_in_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_openai_factory) -> None:
    monkeypatch.chdir(tmp_path)
    folder = photos(tmp_path / "in", PHOTO_NAMES[:2])
    keys = expected_keys(folder, "glm-4v-9b")
    fake = fake_openai_factory(variant="vllm", mode_overrides={keys[PHOTO_NAMES[0]]: "error:400"})
    url = fake.base_url.replace("http://", "http://user:secret-pw@")
    out = tmp_path / "out"
    code, _ = cli(["run", str(folder), "--out", str(out), "--provider", "openai", "--base-url", url,
                   "--model", "glm-4v-9b", "-q"], {}, monkeypatch)
    assert code == 1
    assert all(b"secret-pw" not in f.read_bytes() for f in out.glob("imgtag.db*"))
    fake.config.mode_overrides = {}
    # a 400 would fail the same way again, so plain `retry` leaves it alone: --all forces it
    code, output = cli(["retry", "--out", str(out), "--all", "-q"], {}, monkeypatch)
    assert code == 0, output
    assert all(r["status"] == "ok" for r in results(out).values())


# -- servers that say "no" (LiteLLM's proxy, a base URL without /v1) ----------------------------------------------

def assert_all_pending(out: Path) -> None:
    rows = results(out)
    assert rows and {r["status"] for r in rows.values()} == {"pending"}, rows
    db = sqlite3.connect(out / "imgtag.db")
    (failed,) = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'failed'").fetchone()
    db.close()
    assert failed == 0


@pytest.mark.parametrize(("model", "key", "said"), [
    ("nope-model", "sk-master", "Invalid model name passed in model=nope-model"),
    ("glm-4v-9b", "sk-wrong", "No connected db."),
])
def test_a_gateway_that_refuses_every_request_stops_the_run_at_once(
        model: str, key: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_openai_factory) -> None:
    """LiteLLM's 400s: an unknown alias, a key it cannot check. Not one failure per image: the first requests
    all meet the same refusal, so the run stops (exit 2) quoting the server, and every image is still to do."""
    monkeypatch.chdir(tmp_path)
    fake = fake_openai_factory(variant="litellm", api_key="sk-master")
    folder = photos(tmp_path / "in")
    for i, name in enumerate(PHOTO_NAMES):  # 12 distinct images (a byte appended after the JPEG's end)
        (folder / f"copy{i}_{name}").write_bytes((folder / name).read_bytes() + bytes([i]))
    code, output = cli(["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai", "--model", model,
                        "-q"], {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": key}, monkeypatch)
    assert code == 2, output
    assert said in output and "Traceback" not in output, output
    # Not one request per image: only those already started when the first refusal came (the first wave), and
    # nothing new while a refusal was held.
    assert fake.stats.requests <= 8, fake.stats.requests
    assert_all_pending(tmp_path / "out")


def test_a_base_url_without_v1_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_openai_factory) -> None:
    monkeypatch.chdir(tmp_path)
    fake = fake_openai_factory(variant="vllm")
    folder = photos(tmp_path / "in", PHOTO_NAMES[:4])
    root = fake.base_url.removesuffix("/v1")
    code, output = cli(["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai", "--model",
                        "glm-4v-9b", "--base-url", root, "-q"], {}, monkeypatch)
    assert code == 2, output
    assert "missing /v1" in output and f"--base-url {root}/v1" in output, output
    assert "check --model" not in output, output  # the model name was right
    assert_all_pending(tmp_path / "out")


def test_llama_server_gets_its_schema_as_json_object_and_keeps_to_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_openai_factory) -> None:
    """llama-server refuses json_schema but enforces {"type": "json_object", "schema": ...} with a grammar: that form
    comes before the bare json_object, so even a model that ignores instructions answers valid JSON (the rerun
    starting from it: test_rerun_starts_from_the_remembered_mode)."""
    monkeypatch.chdir(tmp_path)
    fake = fake_openai_factory(variant="llamacpp", output_mode="invalid")
    folder = photos(tmp_path / "in", PHOTO_NAMES[:3])
    keys = expected_keys(folder, "glm-4v-9b")
    code, output = cli(["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai", "--model",
                        "glm-4v-9b", "--format", "jsonl", "-q"], fake.env(), monkeypatch)
    assert code == 0, output
    assert_every_result_on_its_own_image(tmp_path / "out", keys)
    assert fake.stats.response_formats["json_object"] >= 3
    assert {e["response_format"] for e in fake.stats.request_log} == {"json_object+schema"}


def test_scan_takes_base_url_like_run_and_checks_the_model_against_that_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_openai_factory) -> None:
    """`imgtag scan --provider openai --base-url URL --model ...` was "No such option: --base-url" (run, retry,
    status and cancel take it, and imgtag.estimate(base_url=) too), so scan could not ask a local server's model
    list for the did-you-mean the README promises."""
    fake = fake_openai_factory(models=("glm-4v-9b",))
    folder = photos(tmp_path / "in", PHOTO_NAMES[:1])
    code, output = cli(["scan", str(folder), "--provider", "openai", "--base-url", fake.base_url, "--model", "glm4v"],
                       {}, monkeypatch)
    assert code == 0, output
    assert "model 'glm4v' is not in the openai model list for this key (did you mean 'glm-4v-9b'?)" in output, output


def test_packing_that_the_provider_cannot_send_is_refused_not_silently_dropped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_openai_factory) -> None:
    """`--provider openai --images-per-request 4` in sync mode sent one image per request without a word (the
    OpenAI provider sends no packs in sync mode), while --dry-run estimated with packs: now one sentence, exit 2."""
    fake = fake_openai_factory(models=("glm-4v-9b",))
    folder = photos(tmp_path / "in", PHOTO_NAMES[:2])
    for extra in ([], ["--dry-run"]):
        code, output = cli(["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai",
                            "--base-url", fake.base_url, "--model", "glm-4v-9b", "--images-per-request", "4", *extra],
                           {}, monkeypatch)
        assert code == 2, output
        lines = [line for line in output.splitlines() if line.strip()]
        assert len(lines) == 1, output
        assert lines[0].startswith("imgtag: --images-per-request 4: the openai provider sends one image per request "
                                   "in sync mode (--mode batch packs them)"), output
    assert fake.stats.requests == 0 and not (tmp_path / "out").exists()


def test_scan_estimates_sync_unpacked_where_the_provider_packs_only_in_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`scan --provider openai --images-per-request 10` priced the sync column as packs of 10, a run `run` refuses
    in sync mode (OpenAI packs only through its Batch API): sync must be the one-image-per-request figure, batch
    the packed one, and the text says so."""
    folder = photos(tmp_path / "in", PHOTO_NAMES[:4])
    base = ["scan", str(folder), "--provider", "openai", "--model", "gpt-4.1-mini", "--json"]
    summaries = {}
    for k in ("1", "10"):
        code, output = cli([*base, "--images-per-request", k], {"OPENAI_API_KEY": "sk-test"}, monkeypatch)
        assert code == 0, output
        summaries[k] = json.loads(output.strip().splitlines()[-1])
    one, packed = summaries["1"]["estimates"][0], summaries["10"]["estimates"][0]
    assert packed["standard_usd"] == one["standard_usd"]
    assert packed["sync"] == one["sync"]
    assert packed["batch_usd"] < one["batch_usd"]  # the shared prompt is sent once per pack
    assert summaries["10"]["images_per_request"] == {"sync": 1, "batch": 10}
    code, output = cli([*base[:-1], "--images-per-request", "10"], {"OPENAI_API_KEY": "sk-test"}, monkeypatch)
    assert code == 0, output
    assert "sync: one image per request (this provider packs 10 to a request only in --mode batch" in output, output


def test_a_404_names_the_url_it_was_refused_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               fake_openai_factory) -> None:
    """OPENAI_BASE_URL with /v1 twice (the fake's own address plus /v1) said only 'no chat completions endpoint
    there (404: Not Found); check --base-url': no URL to see the doubled /v1 in, and a flag the user never gave."""
    monkeypatch.chdir(tmp_path)
    fake = fake_openai_factory(variant="vllm")
    folder = photos(tmp_path / "in", PHOTO_NAMES[:2])
    code, output = cli(["run", str(folder), "--out", str(tmp_path / "out"), "--provider", "openai", "--model",
                        "glm-4v-9b", "-q"], {"OPENAI_BASE_URL": fake.base_url + "/v1"}, monkeypatch)
    assert code == 2, output
    assert f"{fake.base_url}/v1/chat/completions" in output and "OPENAI_BASE_URL" in output, output
    assert_all_pending(tmp_path / "out")
