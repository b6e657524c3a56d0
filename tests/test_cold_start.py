"""A run's first second (issue 16 item 5, issue 20 item 1): the provider's SDK costs 1-2.5 s to import, so a rerun
with nothing to ask never imports it, and a run that asks imports it in the background while discovery and the
first decodes go on. Checked in fresh interpreters: the test process has every SDK imported already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imagegen import make_images

# Runs the CLI with an audit hook that notes which thread first imports each SDK (and the other libraries a
# rerun has no use for: answer validation, the imaging stack the decode workers use), and prints that at exit.
WATCH_IMPORTS = """
import atexit, json, sys, threading
HEAVY = ("anthropic", "openai", "jsonschema", "numpy", "scipy", "imagehash")
seen = {}
def hook(event, args):
    if event == "import":
        sdk = str(args[0]).partition(".")[0]
        if sdk in HEAVY and sdk not in seen:
            seen[sdk] = threading.current_thread().name
sys.addaudithook(hook)
atexit.register(lambda: print("SDK-IMPORTS " + json.dumps(seen), file=sys.stderr))
sys.argv = ["imgtag", *sys.argv[1:]]
from imgtag.cli.commands import main
main()
"""


def _run(args: list[str], env: dict[str, str], tmp_path: Path) -> tuple[int, dict[str, str]]:
    full_env = {**os.environ, **env, "IMGTAG_CACHE_DIR": str(tmp_path / "user-cache")}
    proc = subprocess.run([sys.executable, "-c", WATCH_IMPORTS, *args], env=full_env, capture_output=True,
                          text=True, timeout=120, check=False)
    line = next((x for x in proc.stderr.splitlines() if x.startswith("SDK-IMPORTS ")), None)
    assert line is not None, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.returncode, json.loads(line.removeprefix("SDK-IMPORTS "))


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_rerun_with_nothing_to_ask_never_imports_the_sdk(provider: str, tmp_path: Path, fake_anthropic_factory: Any,
                                                          fake_openai_factory: Any) -> None:
    make_images(tmp_path / "images", 3)
    if provider == "anthropic":
        env = fake_anthropic_factory().env()
        model: list[str] = []
    else:
        env = {"OPENAI_API_KEY": "sk-test", **fake_openai_factory(models=("gpt-4.1-mini",)).env()}
        model = ["--model", "gpt-4.1-mini"]  # a catalogue model: no model list to ask for
    args = ["run", str(tmp_path / "images"), "--out", str(tmp_path / "out"), "--provider", provider, *model, "-q"]
    code, first = _run(args, env, tmp_path)
    assert code == 0 and provider in first, first
    # It was imported beside the main thread's work (discovery, decoding), not before it.
    assert first[provider] != "MainThread"
    assert "numpy" not in first and "scipy" not in first  # the decode workers hash images, not the main process
    code, again = _run(args, env, tmp_path)
    assert code == 0
    assert again == {}  # every answer is in the store: no SDK, no validator, no imaging stack


# Whether a Ctrl-C would still raise KeyboardInterrupt in the main thread when the SDK's import thread starts.
WATCH_PRELOAD = """
import json, signal, sys
import imgtag.providers.sdk as sdk
seen = []
preload = sdk.SdkClient.preload
def noted(self):
    seen.append(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    preload(self)
sdk.SdkClient.preload = noted
import atexit
atexit.register(lambda: print("PRELOAD " + json.dumps(seen), file=sys.stderr))
sys.argv = ["imgtag", *sys.argv[1:]]
from imgtag.cli.commands import main
main()
"""


def test_the_sdk_import_starts_only_once_a_ctrl_c_no_longer_raises_in_the_main_thread(
        tmp_path: Path, fake_anthropic_factory: Any) -> None:
    """Started before the event loop (to gain ~0.2 s on a new --out), the import thread ran while a Ctrl-C still
    raised KeyboardInterrupt wherever the main thread was: raised inside the import system's module-lock clean-up,
    it was swallowed ("Exception ignored in ... _get_module_lock") and the run hung waiting for the SDK (1 early
    Ctrl-C in 20). The import starts inside the run's event loop, whose handler cancels the run instead."""
    env = {**os.environ, **fake_anthropic_factory().env(), "IMGTAG_CACHE_DIR": str(tmp_path / "user-cache")}
    make_images(tmp_path / "images", 2)
    proc = subprocess.run([sys.executable, "-c", WATCH_PRELOAD, "run", str(tmp_path / "images"), "--out",
                           str(tmp_path / "out"), "-q"], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stderr.splitlines() if x.startswith("PRELOAD "))
    raising = json.loads(line.removeprefix("PRELOAD "))  # one entry per call (the later ones do nothing)
    assert raising and not any(raising)
