"""Test-only crash points: ONEID_TEST_CRASH_AT=<name> kills the run at that point, as a power cut would.

The crash tests (tests/pipelines/test_crash_recovery.py) need to stop a run at exact places (mid-file, between
identity's computation and its commit, half-way through dbt) deterministically; polling from outside would
race. Unset, `crash_point` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import sys

CRASH_ENV = "ONEID_TEST_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) != name:
        return
    sys.stderr.write(f"ONEID_TEST_CRASH_AT: killing the run at {name}\n")
    sys.stderr.flush()
    if os.getpgrp() == os.getpid():
        # session leader (the test starts us so): SIGKILL the whole group, dbt's subprocess included
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(137)
