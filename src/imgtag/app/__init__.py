"""The use cases both clients share: `run`, `scan`, `status`, `export` and `retry` as functions that take settings
and return data, raising `imgtag.errors.ImgtagError` for anything a person must fix.

The CLI (cli.py) adds argument parsing, the progress line and human wording; the Python API (api.py) adds typed
results and async twins. Neither decides anything these modules do not. Every module here imports the stages
lazily, inside the functions: a configuration error must be reported before anything heavy loads
(bench/startup.py).
"""
