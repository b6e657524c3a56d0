"""Typer's parameter coercion without pydantic, for the plain parameter types imgtag's commands use.

typer (0.2x) coerces every command-line value through a pydantic TypeAdapter: any command imports pydantic
(~45 ms) and builds one adapter per parameter (~20 ms for `run`) before it starts, a third of the time a
configuration error takes to report (issue 9 item 15, bench/startup.py). imgtag's parameters are plain str, int,
float, bool, Path and list[str] without constraints. For the usual spellings of those values this module gives
exactly what typer gives (tests/test_cli_params.py compares the two); any other value (an unusual spelling such
as "1_000" or " 5", bytes) goes to typer's own coercion, so typer still decides and words every error.
With a typer whose internals differ (another version), nothing is changed and typer does all of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.core import TyperGroup

try:  # typer's internals, as of 0.2x: without them, FastGroup is a plain TyperGroup
    from typer._coercion import RuntimeParam, build_runtime_param
    from typer._param_types import coerce_cli_path
except ImportError:  # pragma: no cover - another typer
    RuntimeParam = None  # type: ignore[assignment,misc]

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_PLAIN = (str, int, float, bool, Path)
_NO_VALUE = object()


def plain_value(annotation: Any, info: Any, value: Any, param: Any = None, ctx: Any = None) -> Any:
    """value converted to annotation as typer would, or _NO_VALUE when only typer's coercion can tell."""
    try:
        if annotation is str and isinstance(value, str):
            return value
        if annotation is bool and isinstance(value, bool):
            return value
        if annotation is int:
            if type(value) is int:
                return value
            if isinstance(value, str) and _INT.fullmatch(value):
                return int(value)
        if annotation is float:
            if type(value) is float:
                return value
            if isinstance(value, str) and _FLOAT.fullmatch(value):
                return float(value)
        if annotation is Path and isinstance(value, str | Path) and value != "":
            # typer's own path checks (exists, readable, ...), given a Path so that it needs no pydantic
            return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
        if annotation == list[str] and isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return list(value)
    except ValueError:  # e.g. more digits than int() takes: typer says what is wrong
        return _NO_VALUE
    return _NO_VALUE


if RuntimeParam is not None:

    @dataclass(frozen=True)
    class _PlainParam(RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            result = plain_value(self.annotation, self.parameter_info, value, param, ctx)
            if result is not _NO_VALUE:
                return result
            param._runtime_param = build_runtime_param(param.type_descriptor)  # typer's, from now on
            return param._runtime_param._coerce_value(value, param=param, ctx=ctx)


def _is_plain(param: Any) -> bool:
    descriptor = getattr(param, "type_descriptor", None)
    if RuntimeParam is None or descriptor is None or getattr(param, "_runtime_param", 1) is not None:
        return False
    info = descriptor.parameter_info
    annotation = descriptor.annotation
    if descriptor.file_annotation is not None or info.parser is not None or descriptor.choices is not None:
        return False
    if info.min is not None or info.max is not None or getattr(info, "click_type", None) is not None:
        return False
    if annotation is Path:
        return info.path_type is None
    return annotation in _PLAIN or annotation == list[str]


def use_plain_coercion(params: Any) -> None:
    """Give the plain ones among these parameters the coercion above (idempotent)."""
    for param in params:
        if _is_plain(param):
            param._runtime_param = _PlainParam(parameter_info=param.type_descriptor.parameter_info,
                                               annotation=param.type_descriptor.annotation)


class FastGroup(TyperGroup):
    """The app's command group: it and each command it runs get plain coercion first.

    get_params, not params: it adds the --help option, which typer coerces too (its value is None unless given).
    A command's --help is made (and cached) here with the group's context; imgtag's commands take their help
    option names from the group, so it is the same option the command's own context would make."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        use_plain_coercion(self.get_params(ctx))
        return super().parse_args(ctx, args)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            use_plain_coercion(command.get_params(ctx))
        return command
