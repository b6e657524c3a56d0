"""One exception hierarchy rooted in imgtag.ImgtagError (issue 19 item 1): every error imgtag reports to a person
is one, of one of five kinds, and the CLI turns any of them into its one sentence and exit code."""

from __future__ import annotations

import subprocess
import sys

import pytest

import imgtag
from imagegen import make_images, one_sentence, run_cli
from imgtag.config.errors import (
    BudgetError,
    ConfigurationError,
    ImgtagError,
    ProviderError,
    StoreInUseError,
    UsageError,
)
from imgtag.config.tomlfile import load as load_config_file
from imgtag.export import parse_formats
from imgtag.export.writer import ExportRefused
from imgtag.presets import PresetError, load_preset
from imgtag.pricing.extra_models import ModelConfigError
from imgtag.providers.base import ConfigError
from imgtag.request.distributed.cluster import ClusterProblem, RayMissing
from imgtag.review.serve import ServeError
from imgtag.store import Store, StoreBusyError


@pytest.mark.parametrize(("cls", "kind"), [
    (ConfigError, ConfigurationError), (PresetError, ConfigurationError), (ModelConfigError, ConfigurationError),
    (ClusterProblem, ConfigurationError), (RayMissing, ConfigurationError), (ExportRefused, UsageError),
    (ServeError, UsageError), (StoreBusyError, StoreInUseError),
])
def test_every_error_a_person_sees_is_one_kind_of_imgtag_error(cls, kind):
    assert issubclass(cls, kind) and issubclass(kind, ImgtagError)


def test_the_kinds_are_distinct_and_say_their_exit_code():
    kinds = [ConfigurationError, UsageError, ProviderError, BudgetError, StoreInUseError]
    for kind in kinds:
        assert [other for other in kinds if issubclass(kind, other)] == [kind]
        assert kind("x").exit_code == 2
    assert UsageError("no results yet", exit_code=1).exit_code == 1


def test_the_package_names_them_without_importing_the_pipeline():
    assert imgtag.ImgtagError is ImgtagError and imgtag.StoreInUseError is StoreInUseError
    probe = ("import sys, imgtag\nassert issubclass(imgtag.ConfigurationError, imgtag.ImgtagError)\n"
             "print(','.join(m for m in ('imgtag.app.runner', 'imgtag.store', 'numpy', 'anthropic')"
             " if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
    with pytest.raises(AttributeError):
        imgtag.NoSuchThing  # noqa: B018


def test_raised_errors_are_of_their_kind(tmp_path):
    (tmp_path / "imgtag.toml").write_text('modle = "x"\n')
    with pytest.raises(ConfigurationError, match="did you mean 'model'"):
        load_config_file(tmp_path / "imgtag.toml", check_formats=parse_formats)
    with pytest.raises(ConfigurationError, match="unknown preset"):
        load_preset("no-such-preset")
    with Store(tmp_path / "o"), pytest.raises(StoreInUseError, match="another imgtag process"):
        Store(tmp_path / "o")


def test_the_cli_reports_each_kind_in_one_sentence(tmp_path, monkeypatch):
    make_images(tmp_path / "in", 1)
    monkeypatch.chdir(tmp_path)
    code, output = run_cli(["run", "in", "--preset", "no-such-preset"], {"ANTHROPIC_API_KEY": "test-key-not-real"},
                           monkeypatch)
    assert code == 2 and "unknown preset" in one_sentence(output)
    code, output = run_cli(["run", "in", "--budget", "1", "--model", "unknown-model-x", "--provider", "openai",
                            "--base-url", "http://127.0.0.1:9"], {"OPENAI_API_KEY": "test-key-not-real"}, monkeypatch)
    assert code == 2 and "--budget cannot be enforced" in one_sentence(output)
    with Store(tmp_path / "busy"):
        code, output = run_cli(["run", "in", "--out", "busy"], {"ANTHROPIC_API_KEY": "test-key-not-real"},
                               monkeypatch)
    assert code == 2 and "another imgtag process" in one_sentence(output)


def test_the_package_says_it_is_typed():
    """PEP 561: py.typed ships in the package, so type checkers read imgtag's own annotations."""
    from importlib import resources

    assert resources.files("imgtag").joinpath("py.typed").is_file()


def test_a_budget_for_a_misspelt_model_says_which_model_was_meant(tmp_path, monkeypatch):
    """`--model claude-haiku-5.5 --budget 1` was refused for unknown prices with advice to set prices in imgtag.toml,
    though the README promises a did-you-mean for a model imgtag does not know: the typo is what to fix."""
    make_images(tmp_path / "in", 1)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--budget", "1",
                            "--model", "claude-haiku-5.5"], {"ANTHROPIC_API_KEY": "test-key-not-real"}, monkeypatch)
    line = one_sentence(output)
    assert code == 2 and "cannot be enforced" in line and "did you mean 'claude-haiku-5-5'?" in line, line
    assert not (tmp_path / "o").exists()
