"""--help a person can read, words that agree with numbers, and a start-up that imports only what it needs
(issue 9 items 14 and 15)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from imagegen import make_images, run_cli
from imgtag.util.words import plural

HEAVY = ("anthropic", "openai", "numpy", "scipy", "imagehash", "PIL", "jsonschema", "imgtag.app.runner")


def _loaded_after(code: str, cwd, env_extra: dict[str, str] | None = None,
                  heavy: tuple[str, ...] = HEAVY) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "IMGTAG_"))}
    env.update(env_extra or {})
    probe = (f"import sys\n{code}\n"
             f"print('LOADED:' + ','.join(m for m in {heavy!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=60)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("LOADED:")), None)
    assert line is not None, proc.stdout + proc.stderr
    return [m for m in line.removeprefix("LOADED:").split(",") if m]


def test_help_and_version_import_nothing_heavy(tmp_path):
    for argv in (["imgtag", "--help"], ["imgtag", "--version"], ["imgtag", "run", "--help"]):
        code = (f"sys.argv = {argv!r}\nfrom imgtag.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass")
        assert _loaded_after(code, tmp_path, heavy=NOT_FOR_CONFIG_ERRORS) == [], argv


# What a configuration error must be reported without (bench/startup.py): the SDKs and decoders, and the
# ~20-50 ms each of pydantic (typer's coercion), jsonschema, PyYAML, asyncio and the exporters behind --format.
# click: typer 0.2x vendors its own, and click is not among imgtag's dependencies, so importing it would fail.
NOT_FOR_CONFIG_ERRORS = (*HEAVY, "pydantic", "yaml", "asyncio", "imgtag.export.parquet", "imgtag.export.xmp_embed",
                         "imgtag.request.packing", "rich.console", "click")


@pytest.mark.parametrize("flags", [[], ["--images-per-request", "0"], ["--format", "csv,pdf"],
                                   ["--preset", "no-such-preset"], ["--price-in", "1"]],
                         ids=["missing-key", "pack-flag", "format", "preset", "price"])
def test_configuration_errors_are_reported_before_anything_heavy_loads(tmp_path, flags):
    make_images(tmp_path / "in", 1)
    argv = ["imgtag", "run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), *flags]
    code = (f"sys.argv = {argv!r}\nfrom imgtag.cli import main\ntry:\n    main()\nexcept SystemExit as e:\n"
            f"    assert e.code == 2, e.code")
    assert _loaded_after(code, tmp_path, heavy=NOT_FOR_CONFIG_ERRORS) == []
    assert not (tmp_path / "o").exists()


def test_help_reads_well_at_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, output = run_cli(["run", "--help"], {}, monkeypatch)
    assert code == 0
    assert "PATH..." in output and "<str>" not in output and "<int>" not in output and "list[str]" not in output
    assert "--no-detach" not in output and "--no-skip-near-duplicates" not in output
    flat = " ".join(output.split())
    for variable in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "IMGTAG_MODEL", "IMGTAG_OUT"):
        assert variable in flat, variable
    assert "[default: 64]" in flat and "imgtag-out" in flat
    assert max(len(line) for line in output.splitlines()) <= 80
    code, output = run_cli(["--help"], {}, monkeypatch)
    flat = " ".join(output.split())
    assert "--version" in flat and "Show the version and exit." in flat
    assert "..." not in flat.split("Commands:")[1]  # every command's summary fits, none cut off


def test_counts_agree_with_their_nouns(tmp_path, fake_anthropic, monkeypatch):
    assert plural(1, "batch") == "1 batch" and plural(2, "batch") == "2 batches"
    assert plural(1, "file") == "1 file" and plural(0, "file") == "0 files" and plural(1, "attempt") == "1 attempt"
    make_images(tmp_path / "in", 1)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "-q"], fake_anthropic.env(),
                           monkeypatch)
    assert code == 0, output
    assert output.startswith("1 file: ok 1; 1 request,"), output


def test_pacer_and_bomb_messages_speak_to_users():
    from imgtag.request.pacer import Pacer

    text = Pacer(max_concurrency=64).describe()
    assert "advertised" not in text and "window" not in text
    from imgtag.ingest.preprocess import _bomb

    assert "--max-megapixels" in _bomb(20000, 20000, 100_000_000).reason
