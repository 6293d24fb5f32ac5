"""Keep TensorFlow's and absl's logging off the user's terminal unless asked for.

TensorFlow logs from C++ straight to file descriptor 2 (the converter's MLIR passes, oneDNN notices,
CUDA probes), so Python-level logging settings do not reach it: the descriptors themselves are pointed at
a temporary file for the duration, and that file is shown only if the work fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_tensorflow(verbose: bool = False) -> Iterator[None]:
    """Silence TensorFlow, absl and Keras output inside the block; with `verbose`, change nothing."""
    if verbose:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        failed = True
        try:
            with contextlib.redirect_stdout(sys.__stdout__), contextlib.redirect_stderr(sys.__stderr__):
                yield
            failed = False
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if failed:  # the library's own words are the best clue to what went wrong
                log.seek(0)
                tail = log.read()[-4000:].decode(errors="replace")
                if tail.strip():
                    print(tail, file=sys.stderr)
