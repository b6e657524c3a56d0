"""The use cases both clients share: `run`, `scan`, `status`, `export` and `retry` as functions that take settings
and return data, raising `imgtag.ImgtagError` (config/errors.py) for anything a person must fix.

- The entry points: run.py, scan.py, folder.py (status, export, results), retry.py, with settings.py (flags >
  environment > imgtag.toml, the one settings path) and the checks made before anything is spent (flagcheck.py,
  preflight.py, modelcheck.py, export_options.py). These import the stages lazily, inside the functions: a
  configuration error must be reported before anything heavy loads (bench/startup.py).
- What they drive: the local run (runner.py) and the Ray engine's (ray_runner.py), the offline scan (scanner.py),
  the retry plan (retry_plan.py), `status`'s report (status.py), `prune` (prune.py), the end-of-run counts
  (summary.py), the progress line both clients may draw (progress.py) and the sentences a run ends with
  (messages.py).

The CLI (cli/) adds argument parsing and human wording; the Python API (api.py) adds typed results and async
twins. Neither decides anything these modules do not, and nothing here imports either of them.
"""
