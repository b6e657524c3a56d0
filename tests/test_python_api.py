"""The Python API (issue 19 item 1): imgtag.tag, results, estimate and describe against the fake servers, through
the real SDKs and engine; from plain code, from inside a running event loop (as in Jupyter) and with on_event."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import imgtag
from imagegen import close_to, make_images, read_jsonl


@pytest.fixture
def fake(fake_anthropic_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A fake Anthropic server the API reaches through the environment, as the CLI does; a folder of its own."""
    server = fake_anthropic_factory()
    for name in ("IMGTAG_PRESET", "IMGTAG_MODEL", "IMGTAG_PROVIDER", "IMGTAG_LANG", "IMGTAG_CATEGORIES", "IMGTAG_OUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return server


def test_tag_runs_resumes_and_reports_like_the_cli(tmp_path: Path, fake: Any) -> None:
    made = make_images(tmp_path / "in", 4)
    result = imgtag.tag(tmp_path / "in", out=tmp_path / "out")
    assert isinstance(result, imgtag.RunResult)
    assert (result.exit_code, result.ok, result.failed, result.files) == (0, 4, 0, 4)
    assert result.requests == 4 == fake.stats.messages_requests
    assert result.input_tokens > 0 and result.cost_usd is not None and result.cost_usd > 0
    # Dollars summed over attempts carry float noise (0.0005163500000000001): a result prints as a sum of money.
    assert result.cost_usd == round(result.cost_usd, 10), result.cost_usd
    assert result.out == tmp_path / "out" and tmp_path / "out" / "results.jsonl" in result.written
    rows = {row["path"]: row for row in read_jsonl(tmp_path / "out" / "results.jsonl")}
    assert all(close_to(rows[name]["fields"]["color"], colour) for name, colour in made.items())

    again = imgtag.tag([str(tmp_path / "in")], out=tmp_path / "out")  # a rerun asks nothing again
    assert (again.exit_code, again.ok, again.requests, again.done_before) == (0, 4, 0, 4)
    assert fake.stats.messages_requests == 4


def test_results_are_the_contract_rows_as_typed_objects(tmp_path: Path, fake: Any) -> None:
    made = make_images(tmp_path / "in", 3)
    imgtag.tag(tmp_path / "in", out=tmp_path / "out", formats=["csv"])
    rows = list(imgtag.results(tmp_path / "out"))
    assert [type(row) for row in rows] == [imgtag.Result] * 3
    assert sorted(row.path for row in rows) == sorted(made)
    for row in rows:
        assert row.status == "ok" and row.error is None and row.provider == "anthropic" and row.preset == "ecommerce"
        assert row.fields is not None and close_to(row.fields["color"], made[row.path])
        assert row.usage is not None and row.usage["input_tokens"] > 0 and row.cost_usd and row.cost_usd > 0
    with pytest.raises(imgtag.UsageError, match=r"no imgtag store|does not exist|no results"):
        list(imgtag.results(tmp_path / "nothing-here"))


def test_estimate_is_what_scan_prints_and_asks_nothing(tmp_path: Path, fake: Any) -> None:
    make_images(tmp_path / "in", 3)
    (tmp_path / "in" / "copy.jpg").write_bytes((tmp_path / "in" / "img_0001.jpg").read_bytes())
    (tmp_path / "in" / "tiny.png").write_bytes(_png(40, 40))
    est = imgtag.estimate(tmp_path / "in", model="claude-haiku-5-5")
    assert isinstance(est, imgtag.Estimate)
    assert (est.files, est.distinct_images, est.model) == (5, 3, "claude-haiku-5-5")
    assert est.by_reason == {"too_small": 1}
    assert est.cost_usd is not None and 0 < est.batch_cost_usd < est.cost_usd  # type: ignore[operator]
    for model in est.models:
        for dollars in (model.cost_usd, model.batch_cost_usd):
            assert dollars is None or dollars == round(dollars, 10), (model.model, dollars)
    assert est.selected is not None and est.selected.images == 3 and est.selected.input_tokens
    assert len(est.models) > 1  # Anthropic's catalogue side by side, as scan shows it
    assert fake.stats.messages_requests == 0
    assert not (tmp_path / "imgtag-out").exists()  # a scan writes nothing into the project


def _png(width: int, height: int, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_describe_takes_a_path_bytes_or_a_pil_image_and_keeps_nothing(tmp_path: Path, fake: Any) -> None:
    ((name, colour),) = make_images(tmp_path / "in", 1).items()
    path = tmp_path / "in" / name
    by_path = imgtag.describe(path, preset="ecommerce")
    assert set(by_path) >= {"category", "color", "tags"} and close_to(by_path["color"], colour)
    by_bytes = imgtag.describe(_png(300, 260, (30, 200, 30)), preset="ecommerce")
    assert close_to(by_bytes["color"], (30, 200, 30))
    by_pil = imgtag.describe(Image.new("RGB", (320, 240), (30, 30, 200)), preset="ecommerce")
    assert close_to(by_pil["color"], (30, 30, 200))
    caption = imgtag.describe(path, preset="caption")
    assert isinstance(caption.get("short_caption"), str)
    assert fake.stats.messages_requests == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no store, no export left anywhere


@pytest.mark.parametrize("preset", ["keywords", "ocr"])
def test_describe_answers_with_a_preset_whose_limits_the_api_takes_only_as_words(preset: str, fake: Any) -> None:
    """keywords wants 10 to 30 keywords and ocr a BCP 47 `language`: the Messages API refuses those constraints in a
    schema, so they reach the model as words in the field's description (validate/schema.py). A model reading them
    (and the fake, which reads them as a model would) answers within them: describe()'s default preset is usable."""
    fields = imgtag.describe(_png(300, 300), preset=preset)
    if preset == "keywords":
        assert 10 <= len(fields["keywords"]) <= 30
    else:
        assert fields["language"] in ("", "en") or fields["language"].isalpha()
    assert fake.stats.messages_requests == 1  # valid on the first ask


def test_describe_of_an_image_that_cannot_be_read_is_a_usage_error(tmp_path: Path, fake: Any) -> None:
    """docs/python-api.md: an image that cannot be used raises UsageError (it was a ProviderError saying
    "no usable answer ... (corrupt: corrupt: ...)"), and nothing is asked."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(imgtag.UsageError) as info:
        imgtag.describe(broken)
    message = str(info.value)
    assert "\n" not in message and "broken.png" in message and "corrupt" in message, message
    assert "corrupt: corrupt" not in message and "no usable answer" not in message, message
    assert fake.stats.messages_requests == 0


def test_a_misspelt_option_names_the_function_and_the_option_it_resembles(tmp_path: Path, fake: Any) -> None:
    """`tag(..., concurency=4)` raised "run_config() got an unexpected keyword argument", naming an internal
    function; like Python's own message it names the function called, plus the option meant, before any work."""
    make_images(tmp_path / "in", 1)
    with pytest.raises(TypeError, match=r"^tag\(\) got an unexpected keyword argument 'concurency' "
                                        r"\(did you mean 'concurrency'\?\)$"):
        imgtag.tag(str(tmp_path / "in"), out="o", concurency=4)
    with pytest.raises(TypeError, match=r"^describe\(\) got an unexpected keyword argument 'max_egde'"):
        imgtag.describe(_png(300, 300), max_egde=512)
    with pytest.raises(TypeError, match=r"^atag\(\) got an unexpected keyword argument 'nope'"):
        asyncio.run(imgtag.atag(str(tmp_path / "in"), out="o", nope=1))
    assert fake.stats.messages_requests == 0 and not (tmp_path / "o").exists()


def test_describe_raises_one_sentence_for_an_answer_it_cannot_use(tmp_path: Path, fake_anthropic_factory: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    refusing = fake_anthropic_factory(output_mode="refusal")
    for name, value in refusing.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(imgtag.ProviderError, match="refused") as info:
        imgtag.describe(_png(300, 300), preset="ecommerce")
    assert "\n" not in str(info.value)
    with pytest.raises(imgtag.UsageError, match="no such image file"):
        imgtag.describe(tmp_path / "missing.jpg")


def test_settings_come_from_the_environment_and_imgtag_toml_as_on_the_command_line(
        tmp_path: Path, fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    make_images(tmp_path / "in", 2)
    (tmp_path / "imgtag.toml").write_text('preset = "keywords"\nout = "from-toml"\nformats = ["jsonl"]\n')
    result = imgtag.tag("in")
    assert result.out == Path("from-toml") and {p.name for p in result.written} == {"results.jsonl"}
    assert {row.preset for row in imgtag.results("from-toml")} == {"keywords"}
    monkeypatch.setenv("IMGTAG_OUT", "from-env")  # the environment over the file, an argument over both
    assert imgtag.tag("in").out == Path("from-env")
    assert imgtag.tag("in", out="from-argument").out == Path("from-argument")
    (tmp_path / "imgtag.toml").write_text('modle = "x"\n')
    with pytest.raises(imgtag.ConfigurationError, match="did you mean 'model'"):
        imgtag.tag("in")


def test_problems_are_imgtag_errors_raised_before_anything_is_created(tmp_path: Path, fake: Any) -> None:
    make_images(tmp_path / "in", 1)
    with pytest.raises(imgtag.UsageError, match=r"^concurrency must be"):
        imgtag.tag("in", out="o", concurrency=0)
    with pytest.raises(imgtag.ConfigurationError, match="unknown preset"):
        imgtag.tag("in", out="o", preset="no-such-preset")
    with pytest.raises(imgtag.UsageError):
        imgtag.tag("no-such-folder", out="o")
    assert not (tmp_path / "o").exists()


def test_the_blocking_functions_work_inside_a_running_event_loop(tmp_path: Path, fake: Any) -> None:
    """In Jupyter, code runs inside an event loop: asyncio.run cannot nest, and imgtag must not ask it to."""
    make_images(tmp_path / "in", 2)

    async def notebook_cell() -> tuple[Any, ...]:
        ran = imgtag.tag("in", out="o")
        rows = list(imgtag.results("o"))
        est = imgtag.estimate("in")
        fields = imgtag.describe(_png(300, 300), preset="ecommerce")
        return ran, rows, est, fields

    ran, rows, est, fields = asyncio.run(notebook_cell())
    assert ran.ok == 2 and len(rows) == 2 and est.distinct_images == 2 and "color" in fields


def test_async_twins_leave_the_callers_loop_free(tmp_path: Path, fake_anthropic_factory: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    slow = fake_anthropic_factory(latency_s=0.3)
    for name, value in slow.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    make_images(tmp_path / "in", 3)

    async def main() -> tuple[Any, dict[str, Any], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        beat = asyncio.create_task(ticker())
        ran, fields = await asyncio.gather(imgtag.atag("in", out="o"),
                                           imgtag.adescribe(_png(300, 300), preset="ecommerce"))
        beat.cancel()
        return ran, fields, ticks

    ran, fields, ticks = asyncio.run(main())
    assert ran.ok == 3 and "color" in fields
    assert ticks >= 10  # the loop kept running while both worked (0.3 s per answer)


def test_on_event_receives_the_runs_events(tmp_path: Path, fake: Any) -> None:
    make_images(tmp_path / "in", 3)
    events: list[dict[str, Any]] = []
    threads: set[str] = set()

    def on_event(event: Any) -> None:
        events.append(json.loads(json.dumps(dict(event))))  # plain JSON data, as --events writes it
        threads.add(threading.current_thread().name)

    result = imgtag.tag("in", out="o", on_event=on_event)
    kinds = [event["type"] for event in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("image_done") == 3 and all(event["v"] == 1 for event in events)
    assert events[-1]["exit_code"] == result.exit_code == 0


def test_status_export_and_retry_are_functions_too(tmp_path: Path, fake_anthropic_factory: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """What the CLI's status, export and retry do, a script can do: the same use cases (app/)."""
    made = make_images(tmp_path / "in", 4)
    flaky = fake_anthropic_factory(fail_first_n=4)  # the first four asks: 529 overloaded
    for name, value in flaky.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    first = imgtag.tag("in", out="o", max_attempts=1)
    assert first.exit_code == 1 and first.failed == 4
    report = imgtag.folder_status("o")
    assert report["by_status"] == {"failed": 4} and len(report["failures"]) == 4
    retried = imgtag.retry_failed("o")  # an overloaded server may answer now
    assert retried is not None and retried.ok == 4 and retried.exit_code == 0
    assert imgtag.folder_status("o")["by_status"] == {"ok": 4}
    assert imgtag.retry_failed("o") is None  # nothing left to retry
    done = imgtag.export_files("o", formats=["csv", "txt"], txt_template="{color}")
    assert {p.name for p in done.written} == {"results.csv"} and done.not_written is None
    for name, colour in made.items():
        assert close_to((tmp_path / "in" / name).with_suffix(".txt").read_text(), colour)


def test_a_quick_prompt_is_a_task_of_its_own_and_resumes(tmp_path: Path, fake: Any) -> None:
    make_images(tmp_path / "in", 2)
    first = imgtag.tag("in", out="q", prompt="Is there a person in the photo?", fields=["person:bool", "where:str"])
    assert first.ok == 2 and first.requests == 2
    assert all(set(row.fields or {}) == {"person", "where"} for row in imgtag.results("q"))
    again = imgtag.tag("in", out="q", prompt="Is there a person in the photo?", fields=["person:bool", "where:str"])
    assert again.requests == 0 and again.done_before == 2
    with pytest.raises(imgtag.UsageError, match="not both"):
        imgtag.tag("in", out="q", preset="caption", prompt="Is there a person?")


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_a_script_without_a_main_guard_tags_its_images(tmp_path: Path, fake: Any, how: str) -> None:
    """Decode workers come from a forkserver, which imports the parent's main module in every worker: a script
    with imgtag.tag() at top level (no `if __name__ == "__main__":`) ran the script again in each worker, and a
    script read from stdin could not be found; every image was then recorded as a corrupt file."""
    import subprocess
    import sys

    make_images(tmp_path / "in", 3)
    script = (f"import imgtag\nresult = imgtag.tag({str(tmp_path / 'in')!r}, out={str(tmp_path / 'out')!r})\n"
              "print('RESULT', result.ok, result.failed)\n")
    if how == "file":
        (tmp_path / "tag_photos.py").write_text(script, encoding="utf-8")
        done = subprocess.run([sys.executable, str(tmp_path / "tag_photos.py")], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)
    else:
        done = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120,
                              cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("RESULT") == 1 and "RESULT 3 0" in done.stdout, (done.stdout, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


def test_a_stopper_ends_a_run_gracefully_keeping_the_answers_on_their_way(tmp_path: Path, fake: Any) -> None:
    """What the CLI's first Ctrl-C does, from Python: `Stopper.stop()` from another thread (a notebook's other
    cell); the answers already asked for arrive and are stored; the call returns a result saying so."""
    make_images(tmp_path / "in", 12)
    fake.config.latency_s, fake.config.ttft_s = 2.0, 0.1  # each answer begins at once and takes 2 s

    def begun() -> int:
        with fake.stats.lock:
            return sum(fake.stats.answered_by_key.values())

    stopper = imgtag.Stopper()

    def stop_when_asked() -> None:
        while begun() < 2:
            threading.Event().wait(0.02)
        stopper.stop()

    threading.Thread(target=stop_when_asked, daemon=True).start()
    result = imgtag.tag(tmp_path / "in", out=tmp_path / "out", concurrency=4, stop=stopper)
    assert result.interrupted and result.exit_code == 130
    assert result.ok == begun() >= 2 and result.ok + result.pending == 12, result
    assert result.message is not None and "arrived while stopping" in result.message
    fake.config.latency_s = 0.0
    again = imgtag.tag(tmp_path / "in", out=tmp_path / "out")
    assert again.exit_code == 0 and fake.stats.messages_requests == 12  # nothing asked twice


def test_a_stopper_stopped_before_the_run_stops_it_at_once(tmp_path: Path, fake: Any) -> None:
    make_images(tmp_path / "in", 3)
    stopper = imgtag.Stopper()
    stopper.stop()
    result = imgtag.tag(tmp_path / "in", out=tmp_path / "out", stop=stopper)
    assert result.interrupted and result.exit_code == 130 and result.ok == 0
    assert fake.stats.messages_requests == 0


def test_api_errors_name_the_parameters_and_the_cli_its_flags(fake: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An API error named the CLI's flag ("--budget must be ..." for tag(budget=-1)); it names the parameter the
    caller wrote now, while the command line says exactly what it said."""
    from imagegen import one_sentence, run_cli

    make_images(tmp_path / "in", 1)
    (tmp_path / "file").write_text("x")
    cases = [
        (lambda: imgtag.tag("in", out="o", budget=-1), "budget must be an amount in USD above 0, not -1",
         ["run", "in", "--out", "o", "--budget", "-1"], "--budget must be an amount in USD above 0, not -1"),
        (lambda: imgtag.tag("in", out="o", mode="later"), "mode must be sync or batch, not 'later'",
         ["run", "in", "--out", "o", "--mode", "later"], "--mode must be sync or batch, not 'later'"),
        (lambda: imgtag.tag("in", out="file"), "out file is a file, not a folder",
         ["run", "in", "--out", "file"], "--out file is a file, not a folder"),
        (lambda: imgtag.tag("in", out="o", detach=True), "detach only applies to mode='batch'",
         ["run", "in", "--out", "o", "--detach"], "--detach only applies to --mode batch"),
        (lambda: imgtag.tag("in", out="o", price_in=1), "give both price_in and price_out",
         ["run", "in", "--out", "o", "--price-in", "1"], "give both --price-in and --price-out"),
        (lambda: imgtag.tag("in", out="o", fields=["a:str"]), "fields describe the answer to a prompt",
         ["run", "in", "--out", "o", "--field", "a:str"], "--field describes the answer to a --prompt"),
        (lambda: imgtag.estimate("in", images_per_request=0), "images_per_request must be between 1 and",
         ["scan", "in", "--images-per-request", "0"], "--images-per-request must be between 1 and"),
        (lambda: imgtag.estimate("in", detail="huge"), "detail must be one of",
         ["scan", "in", "--detail", "huge"], "--detail must be one of"),
        (lambda: imgtag.tag("in", out="o", lang="xx-nope"), "lang",
         ["run", "in", "--out", "o", "--lang", "xx-nope"], "--lang"),
    ]
    for call, api_words, args, cli_words in cases:
        with pytest.raises(imgtag.ImgtagError) as info:
            call()
        assert api_words in str(info.value) and "--" not in str(info.value), str(info.value)
        code, output = run_cli(args, fake.env(), monkeypatch)
        assert code == 2 and cli_words in one_sentence(output), output
    assert not (tmp_path / "o").exists()


# Strings under src/imgtag (outside cli/) that keep a flag's spelling on purpose; any other message names a setting
# through config/options.py `option()`, so the Python API names its parameter and the CLI its flag.
FLAGS_KEPT = {
    "app/messages.py": "commands a person types (`imgtag run ... --mode batch`, `imgtag cancel --out`)",
    "app/prune.py": "the command a person types (`imgtag prune --out X --yes`)",
    "app/run.py": "the command a person types (`imgtag export --format ...`)",
    "config/options.py": "the flags themselves",
    "config/runconfig.py": "budget_source's default, for a RunConfig built without the settings path",
    "events/jsonl.py": "--events is the command line's own (the API takes on_event)",
    "export/targets.py": "the flags of a command a person types (`imgtag export --preset ... --model ...`)",
    "export/xmp_embed.py": "a file's reason, kept in the store (read by both clients later)",
    "ingest/pipeline.py": "a file's reason, kept in the store",
    "ingest/preprocess.py": "a file's reason, kept in the store",
    "presets/quick.py": "the CLI's own example, and the preset's description, kept in the store",
    "pricing/user_prices.py": "where a model's prices came from, said by the CLI only",
    "request/distributed/cluster.py": "Ray's own command (`ray start --head`)",
}


def test_messages_name_settings_through_option() -> None:
    """Every string under src/imgtag outside cli/ that spells a flag (--name) is in a module FLAGS_KEPT explains."""
    import ast
    import re

    root = Path(imgtag.__file__).parent
    flag = re.compile(r"--[a-z][a-z-]+")
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("cli/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and flag.search(node.value)):
                found.setdefault(rel, []).append(f"{rel}:{node.lineno}: {node.value[:60]!r}")
    unexplained = [line for rel, lines in found.items() if rel not in FLAGS_KEPT for line in lines]
    assert not unexplained, "\n".join(unexplained)
    assert set(FLAGS_KEPT) <= set(found), set(FLAGS_KEPT) - set(found)  # an entry no longer needed goes


def test_a_budget_stop_names_the_parameter_in_the_api(tmp_path: Path, fake: Any) -> None:
    """The budget stop's sentence said "--budget caps each run" to a notebook too."""
    make_images(tmp_path / "in", 12)
    result = imgtag.tag(tmp_path / "in", out=tmp_path / "out", model="my-gateway-model", price_in=1, price_out=5,
                        budget=0.0015, concurrency=2)
    assert result.exit_code == 1 and result.pending > 0, result
    assert result.message is not None and result.message.endswith("(run again to send them: budget caps each run)")
