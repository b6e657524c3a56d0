"""cliparams: imgtag's plain parameters are coerced without pydantic, to exactly what typer's own coercion gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer._coercion import build_runtime_param, resolve_type_descriptor
from typer.models import OptionInfo
from typer.testing import CliRunner

from imgtag.cli import params as cliparams
from imgtag.cli.commands import app

CASES: list[tuple[Any, Any]] = [
    *[(str, v) for v in ("abc", "", " spaced ", "上衣", "-")],
    *[(int, v) for v in ("5", "+5", "-0", "007", "-12", "123456789012345678901234567890", 64)],
    *[(float, v) for v in ("5", "1e3", ".5", "5.", "-1.5E-3", "+2.25", "1e400", 120.0)],
    *[(bool, v) for v in (True, False)],
    *[(Path, v) for v in ("out", "/tmp", "no/such/dir", "imgtag-out", Path("x"))],
    *[(list[str], v) for v in (("a", "b"), ["photos", "-"], ())],
]


@pytest.mark.parametrize(("annotation", "value"), CASES)
def test_plain_values_come_out_as_typer_makes_them(annotation: Any, value: Any) -> None:
    descriptor = resolve_type_descriptor(annotation, OptionInfo())
    expected = build_runtime_param(descriptor)._coerce_value(value, param=None, ctx=None)
    got = cliparams.plain_value(annotation, descriptor.parameter_info, value)
    assert got is not cliparams._NO_VALUE
    assert (type(got), got) == (type(expected), expected)


@pytest.mark.parametrize(("annotation", "value"), [
    (int, "1_000"), (int, " 5"), (int, "5.0"), (int, "٣"), (int, "abc"), (float, "nan"), (float, "1_0.5"),
    (float, "inf"), (Path, ""), (str, b"bytes"), (bool, "yes"), (list[str], ("a", 1)),
])
def test_other_spellings_are_left_to_typer(annotation: Any, value: Any) -> None:
    assert cliparams.plain_value(annotation, OptionInfo(), value) is cliparams._NO_VALUE


@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("--concurrency", "abc", "Invalid value for '--concurrency'"),
    ("--timeout", "soon", "Invalid value for '--timeout'"),
])
def test_bad_values_get_typers_own_message(tmp_path: Path, flag: str, value: str, expected: str) -> None:
    result = CliRunner().invoke(app, ["run", str(tmp_path), "--out", str(tmp_path / "o"), flag, value])
    assert result.exit_code == 2
    assert expected in result.output


def test_unusual_spellings_still_work_through_typer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """'1_000' is valid for typer (pydantic); the plain path hands it over rather than refusing it."""
    seen: dict[str, Any] = {}

    def fake_execute(cfg: Any, command: str) -> None:
        seen.update(concurrency=cfg.concurrency, timeout=cfg.timeout, out=cfg.out)

    monkeypatch.setattr("imgtag.cli.commands._execute", fake_execute)
    result = CliRunner().invoke(app, ["run", str(tmp_path), "--out", str(tmp_path / "o"), "--concurrency", "1_000",
                                      "--timeout", "2.5"])
    assert result.exit_code == 0, result.output
    assert seen == {"concurrency": 1000, "timeout": 2.5, "out": tmp_path / "o"}
