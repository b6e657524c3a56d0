"""The program's last step: leave without the interpreter's teardown.

With the providers' SDKs loaded, CPython's teardown (destroying every module and the many classes pydantic made)
takes 1.2-2 s after the last line is printed (`python -c "import anthropic"` on a 2-core machine), time a user
waits for nothing: everything imgtag writes is closed by then. So the command line's entry point, once `main()`
has finished (the store closed, exports written and renamed, the decode pool's helpers reaped), does what an
orderly exit does that matters and then ends the process at once:
- waits for threads that are not daemons (as the interpreter would);
- runs the `atexit` handlers (logging's shutdown flushes its handlers, weakref finalizers remove temporary
  folders, a library's own clean-up, such as Ray's, runs);
- flushes stdout and stderr (an exit status of 120 when that fails, as Python's own exit gives);
- `os._exit` with the status `SystemExit` carried.
Only the entry point does this; `main()` itself still raises SystemExit, for callers that go on afterwards.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn

FLUSH_FAILED = 120  # what CPython exits with when flushing stdout/stderr at exit fails


def exit_status(code: object) -> int:
    """The status `sys.exit(code)` would give: None is 0, an int itself, anything else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(OSError, ValueError):
        print(code, file=sys.stderr)
    return 1


def leave(code: object) -> NoReturn:
    status = exit_status(code)
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # the handlers an orderly exit runs (logging.shutdown is one of them)
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe, or a stream closed already
            status = status or FLUSH_FAILED
    os._exit(status)
