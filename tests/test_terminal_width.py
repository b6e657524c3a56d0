"""Every line fits the terminal, wrapped at word boundaries (issue 17 item 11): `presets`, `providers`, `scan`,
`status`, a run's summary and the Ctrl-C sentence, at 80 and at 60 columns (COLUMNS, as a terminal sets it).
Without a width (output to a file or a pipe, COLUMNS unset) lines stay whole, for grep and logs."""

from __future__ import annotations

import pytest
from PIL import Image

from imagegen import make_images, run_cli
from imgtag.app.messages import interrupted_message
from imgtag.cli.screen import fit


def _fits(output: str, width: int) -> None:
    too_long = [line for line in output.splitlines() if len(line) > width]
    assert too_long == [], f"lines over {width} columns:\n" + "\n".join(too_long)


def _flat(output: str) -> str:
    """The words in order, whatever the line breaks: a word cut in two shows up as two words."""
    return " ".join(output.split())


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("width")
    make_images(root / "in", 3)
    Image.new("RGB", (256, 171), "red").save(root / "in" / "a_rather_long_file_name_for_a_small_image.jpg")
    return root


@pytest.mark.parametrize("width", [80, 60])
def test_listings_fit_the_terminal(monkeypatch, width):
    monkeypatch.setenv("COLUMNS", str(width))
    for command in (["presets"], ["providers"]):
        code, output = run_cli(command, {}, monkeypatch)
        assert code == 0, output
        _fits(output, width)
    code, output = run_cli(["presets"], {}, monkeypatch)
    assert "Screenshots and documents: all visible text in reading order, its language, has_text" in _flat(output)
    code, output = run_cli(["providers"], {}, monkeypatch)
    assert "native schema; batch; images jpeg, png, gif, webp" in _flat(output)


@pytest.mark.parametrize("width", [80, 60])
def test_scan_run_and_status_fit_the_terminal(folder, fake_anthropic, monkeypatch, width):
    monkeypatch.setenv("COLUMNS", str(width))
    out = folder / f"out{width}"
    code, output = run_cli(["scan", str(folder / "in")], {}, monkeypatch)
    assert code == 0, output
    _fits(output, width)
    assert "short side under 200 px; use --min-side 0 to tag anyway" in _flat(output)
    code, output = run_cli(["run", str(folder / "in"), "--out", str(out), "-q"], fake_anthropic.env(), monkeypatch)
    assert code == 0, output
    _fits(output, width)
    code, output = run_cli(["status", "--out", str(out)], {}, monkeypatch)
    assert code == 0, output
    _fits(output, width)
    assert "cache write" in output


@pytest.mark.parametrize("width", [80, 60])
def test_the_interrupt_sentence_breaks_between_words(width):
    text = "imgtag: " + interrupted_message(2, "/srv/photos/imgtag-out")
    wrapped = fit(text, width)
    _fits(wrapped, width)
    assert _flat(wrapped) == _flat(text)
    assert all(line.startswith("  ") for line in wrapped.splitlines()[1:])  # continuation lines are indented


def test_without_a_width_lines_stay_whole(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    code, output = run_cli(["presets"], {}, monkeypatch)
    assert code == 0
    assert any(len(line) > 80 for line in output.splitlines())


def test_cancel_fits_the_terminal(tmp_path, fake_anthropic_factory, monkeypatch):
    """`imgtag cancel`'s line per batch was printed whole, so a terminal cut it mid-word ("0 faile" / "d")."""
    make_images(tmp_path / "in", 3)
    fake = fake_anthropic_factory(batch_processing_s=30.0, batch_cancel_s=0.05)
    out = tmp_path / "out"
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(out), "--mode", "batch", "--detach", "-q"],
                           fake.env(), monkeypatch)
    assert code == 0, output
    monkeypatch.setenv("COLUMNS", "60")
    code, output = run_cli(["cancel", "--out", str(out)], fake.env(), monkeypatch)
    assert code == 0, output
    _fits(output, 60)
    assert "canceled; 0 answered and recorded, 0 failed, 3 back to pending" in _flat(output)


def _cells(line: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in line)


def test_wide_characters_count_as_two_columns():
    """`imgtag status` at 80 columns on a Chinese file name: the name is 74 columns wide but 37 characters, so
    'failed <name>: corrupt: PNG signature found' was judged to fit and the terminal broke it mid-word."""
    name = "损坏的图片文件名字也很长需要测试换行宽度是否正确计算全角字符宽度问题.png"
    text = f"  failed {name}: corrupt: PNG signature found but the header cannot be read"
    lines = fit(text, 80, indent="  ").splitlines()
    # the name (79 columns with its colon) cannot share a line: it stays whole on its own, nothing after it
    assert f"    {name}:" in lines, lines
    assert all(_cells(line) <= 80 for line in lines if name not in line), lines
    assert " ".join(" ".join(lines).split()) == " ".join(text.split())
    short = "宽" * 30 + " ok"  # 63 columns: fits, kept as it is
    assert fit(short, 80) == short
    assert fit("宽" * 30 + " " + "宽" * 20, 80).splitlines() == ["宽" * 30, "  " + "宽" * 20]


def test_runs_of_spaces_inside_a_wrapped_line_are_kept():
    """scan's per-file lines are columns (`skipped  PNG      300x187 ...`): wrapping keeps their spacing."""
    line = "skipped  PNG           300x187      -  small.png  — too small: 300x187 px (short side under 200 px)"
    first = fit(line, 80).splitlines()[0]
    assert first.startswith("skipped  PNG           300x187      -  small.png  — too small:"), first
