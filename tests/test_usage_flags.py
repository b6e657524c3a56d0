"""Tryout defects: numbers, --lang, --detach refused in one sentence (exit 2) before anything is created."""

from __future__ import annotations

import pytest

from imagegen import make_images, one_sentence, run_cli

SECRET = "test-key-not-real-SECRET-000000"


def refused(tmp_path, monkeypatch, args: list[str], command: str = "run") -> str:
    make_images(tmp_path / "in", 1)
    out = tmp_path / "o"
    code, output = run_cli([command, str(tmp_path / "in"), "--out", str(out), *args], {"ANTHROPIC_API_KEY": SECRET},
                           monkeypatch)
    assert code == 2, output
    assert not out.exists()  # nothing created: no store, no out folder
    return one_sentence(output)


@pytest.mark.parametrize("flag,value", [
    ("--concurrency", "0"), ("--timeout", "0"), ("--budget", "-1"), ("--budget", "0"), ("--max-attempts", "0"),
    ("--workers", "0"), ("--max-megapixels", "0"), ("--price-in", "-1"), ("--min-side", "-5"),
    ("--batch-max-requests", "0"), ("--batch-max-requests", "100001"), ("--batch-max-mb", "0"),
    ("--batch-max-mb", "300"), ("--poll-interval", "0"), ("--ray-actors", "0"), ("--ray-batch-size", "-1"),
    ("--images-per-request", "0"), ("--timeout", "nan"),
])
def test_meaningless_numbers_are_refused(tmp_path, monkeypatch, flag, value):
    extra = ["--price-out", "1"] if flag == "--price-in" else []
    line = refused(tmp_path, monkeypatch, [flag, value, *extra])
    assert flag in line and " must be " in line


@pytest.mark.parametrize("flag,value", [("--workers", "0"), ("--max-megapixels", "-1"), ("--min-side", "-1")])
def test_scan_refuses_meaningless_numbers(tmp_path, monkeypatch, flag, value):
    line = refused(tmp_path, monkeypatch, [flag, value], command="scan")
    assert flag in line and " must be " in line


def test_zero_prices_are_allowed(tmp_path, monkeypatch):
    make_images(tmp_path / "in", 1)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--dry-run", "-q",
                            "--price-in", "0", "--price-out", "0", "--min-side", "0"], {}, monkeypatch)
    assert code == 0, output


def test_detach_without_batch_mode(tmp_path, monkeypatch):
    line = refused(tmp_path, monkeypatch, ["--detach"])
    assert "--detach" in line and "--mode batch" in line


@pytest.mark.parametrize("command", ["run", "scan"])
def test_unknown_lang_code_is_refused(tmp_path, monkeypatch, command):
    line = refused(tmp_path, monkeypatch, ["--lang", "zz"], command=command)
    assert line.startswith("imgtag: --lang 'zz' is not a language code")
    assert "did you mean 'zh'?" in line and "known codes: " in line


def test_unknown_lang_from_environment_and_config_file(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGTAG_LANG", "jp")
    line = refused(tmp_path, monkeypatch, ["--dry-run"])
    assert "IMGTAG_LANG 'jp'" in line and "did you mean 'ja'?" in line
    monkeypatch.delenv("IMGTAG_LANG")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgtag.toml").write_text('lang = "xx"\n')
    line = refused(tmp_path, monkeypatch, ["--dry-run"])
    assert "imgtag.toml lang 'xx'" in line


@pytest.mark.parametrize("lang,name", [("zh-Hant", "Chinese (Traditional)"), ("pt-BR", "Portuguese (Brazil)"),
                                       ("es-MX", "Spanish (es-mx)"), ("Cantonese", "Cantonese")])
def test_bcp47_tags_of_known_languages_and_names_are_accepted(tmp_path, monkeypatch, lang, name):
    from imgtag.presets import load_preset

    make_images(tmp_path / "in", 1)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--dry-run", "-q",
                            "--lang", lang], {}, monkeypatch)
    assert code == 0, output
    assert f"in {name}," in load_preset("keywords", lang=lang).system


def test_out_in_a_folder_refusing_new_entries(tmp_path, monkeypatch):
    import pathlib

    make_images(tmp_path / "in", 1)
    real_mkdir = pathlib.Path.mkdir

    def no_entries(self, *a, **k):  # what /proc answers to root: ENOENT, whatever the permissions say
        if self.name == "forbidden":
            raise FileNotFoundError(2, "No such file or directory", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "mkdir", no_entries)
    code, output = run_cli(["run", str(tmp_path / "in"), "--out", str(tmp_path / "forbidden"), "--dry-run", "-q"],
                           {}, monkeypatch)
    assert code == 2
    line = one_sentence(output)
    assert "cannot be created" in line and "Errno" not in line and "No such file or directory" in line
    assert not (tmp_path / "forbidden").exists()


def test_status_names_each_cause_once(tmp_path, monkeypatch):
    from test_status import _store_with_failures

    _store_with_failures(tmp_path, 2)
    code, output = run_cli(["status", "--out", str(tmp_path)], {}, monkeypatch)
    assert code == 0, output
    assert "bad0.jpg: corrupt: bad header" in output and "corrupt: corrupt" not in output


def test_one_request_window_is_singular():
    from imgtag.request.pace_words import pace_words
    from imgtag.request.pacer import Pacer

    class OneAtATime:
        def concurrency_limit(self) -> int:
            return 1

    pacer = Pacer(max_concurrency=8)
    assert "up to 1 request at a time" in pace_words(pacer, OneAtATime())  # type: ignore[arg-type]


def test_server_sentence_is_not_doubly_punctuated():
    from imgtag.config.options import cli_naming
    from imgtag.providers.openai_wire import classify

    with cli_naming():  # as the command line words it (the Python API names the parameter: check model)
        err = classify(404, "The model `llava` does not exist.", {}, {}, None, "OPENAI_API_KEY")
    assert "does not exist; check --model" in str(err)


@pytest.mark.parametrize("value", [",,", " , ", "@empty.txt"])
def test_categories_that_name_none_are_refused(tmp_path, monkeypatch, value):
    """`--categories ,,` (or "$CATS" unset, or a file of comments only) ran with no category list at all, silently."""
    (tmp_path / "empty.txt").write_text("# none yet\n\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    line = refused(tmp_path, monkeypatch, ["--categories", value, "--dry-run"])
    assert "--categories" in line and "names no category" in line, line


def test_out_that_is_the_folder_to_tag_is_refused_saying_so(tmp_path, monkeypatch):
    """`imgtag run photos --out photos` said 'no files to tag in 'photos'', of a folder full of images: the output
    folder is never walked, and here it is the input itself."""
    make_images(tmp_path / "in", 2)
    monkeypatch.chdir(tmp_path)
    for out in ("in", str(tmp_path / "in") + "/"):
        code, output = run_cli(["run", "in", "--out", out, "--dry-run"], {"ANTHROPIC_API_KEY": SECRET}, monkeypatch)
        line = one_sentence(output)
        assert code == 2 and "is the folder to tag" in line and "--out in/imgtag-out" in line, line
        assert not (tmp_path / "in" / "imgtag.db").exists()
