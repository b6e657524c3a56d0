"""Third-party providers through the `imgtag.providers` entry point group, driven through the real CLI.

The example package in tests/data/imgtag-echo-provider is pip-installed (with its dist-info) into a
temporary directory put on PYTHONPATH, exactly how an installed package's entry points are found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagegen import close_to, make_images

ECHO_PACKAGE = Path(__file__).parent / "data" / "imgtag-echo-provider"


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                    "--target", str(target), str(ECHO_PACKAGE)], check=True, capture_output=True)
    # A second, broken package: its entry point names a module that does not exist.
    dist = target / "imgtag_broken_provider-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: imgtag-broken-provider\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[imgtag.providers]\nbroken = imgtag_broken_missing:Nope\n")
    return target


def imgtag(args: list[str], plugin_path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "imgtag", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_installed_provider_is_listed_with_package_and_capabilities(plugin_path: Path, tmp_path: Path) -> None:
    res = imgtag(["providers", "--json"], plugin_path, tmp_path)
    assert res.returncode == 0, res.stderr
    rows = {row["name"]: row for row in json.loads(res.stdout)}
    assert rows["echo"]["package"] == "imgtag-echo-provider"
    assert rows["echo"]["capabilities"]["max_image_edge"] == 512
    assert rows["anthropic"]["package"] == "imgtag"
    # The broken package costs one explained entry, not the listing.
    assert "imgtag_broken_missing" in rows["broken"]["error"]
    text = imgtag(["providers"], plugin_path, tmp_path)
    assert text.returncode == 0 and "Traceback" not in text.stderr + text.stdout
    echo_line = next(line for line in text.stdout.splitlines() if line.startswith("echo "))
    assert "imgtag-echo-provider" in echo_line and "max edge 512 px" in echo_line


def test_entry_point_provider_runs_end_to_end(plugin_path: Path, tmp_path: Path) -> None:
    made = make_images(tmp_path / "in", 6, size=(900, 700))
    out = tmp_path / "out"
    # alt-text's standard detail would send 900x700 whole: only the provider's own limit makes it smaller.
    res = imgtag(["run", str(tmp_path / "in"), "--out", str(out), "--provider", "echo", "--preset", "alt-text", "-q"],
                 plugin_path, tmp_path)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert row["status"] == "ok" and row["provider"] == "echo"
        colour, size, _ = row["fields"]["alt"].split()  # the echo answers "#rrggbb WxH alt"
        assert close_to(colour, made[Path(row["path"]).name])
        # The provider's max_image_edge reached preprocessing: what it received (the size it decoded) is at most
        # 512 px long, and 900x700 was scaled down to about that, not past it.
        width, height = (int(n) for n in size.split("x"))
        assert 448 < max(width, height) <= 512, size


def test_broken_entry_point_is_one_sentence_exit_2(plugin_path: Path, tmp_path: Path) -> None:
    make_images(tmp_path / "in", 1)
    res = imgtag(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--provider", "broken"],
                 plugin_path, tmp_path)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "imgtag-broken-provider" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_unknown_provider_lists_installed_ones(plugin_path: Path, tmp_path: Path) -> None:
    make_images(tmp_path / "in", 1)
    res = imgtag(["run", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--provider", "nope"],
                 plugin_path, tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "echo" in res.stderr and "anthropic" in res.stderr
