"""The one settings path (issue 19 item 1): a value given, else the environment, else imgtag.toml, else the default;
and imgtag.toml is read there only: pricing learns the user's models from it, never from the current folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgtag.app.settings import Settings
from imgtag.config.errors import ConfigurationError
from imgtag.pricing.catalogue import catalogue
from imgtag.pricing.extra_models import use_models_table


def test_given_then_environment_then_file_then_default(tmp_path: Path) -> None:
    (tmp_path / "imgtag.toml").write_text('preset = "caption"\nmodel = "from-file"\nconcurrency = 3\n')
    settings = Settings.load(tmp_path / "imgtag.toml", environ={"IMGTAG_MODEL": "from-env", "IMGTAG_LANG": ""})
    assert settings.pick("given", "model") == "given"
    assert settings.pick(None, "model") == "from-env"
    assert settings.pick(None, "preset", "ecommerce") == "caption"
    assert settings.pick(None, "lang", "en") == "en"  # an empty variable is not set
    assert settings.pick(None, "concurrency", 64) == 3
    assert settings.source(None, "model", "--model") == "IMGTAG_MODEL"
    assert settings.source(None, "preset", "--preset") == "imgtag.toml preset"
    assert settings.out(None) == Path("imgtag-out")


def test_pricing_knows_the_users_models_only_through_the_settings(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgtag.toml").write_text('[models."my-local-vlm"]\ninput = 0\noutput = 0\nmax_edge = 896\n')
    use_models_table(None)
    assert catalogue().lookup("my-local-vlm") is None  # the file in the current folder is not read behind our back
    Settings.load()
    info = catalogue().lookup("my-local-vlm")
    assert info is not None and info.max_edge == 896 and info.prices is not None and info.prices.input == 0
    (tmp_path / "other.toml").write_text("")
    Settings.load(tmp_path / "other.toml")  # another file: its models (none) replace the first file's
    assert catalogue().lookup("my-local-vlm") is None
    (tmp_path / "imgtag.toml").write_text('[models."my-local-vlm"]\ninput = -1\n')
    Settings.load()
    with pytest.raises(ConfigurationError, match=r"input must be a number >= 0"):
        catalogue().lookup("my-local-vlm")
    use_models_table(None)
