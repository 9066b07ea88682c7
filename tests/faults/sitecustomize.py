"""Fault injection for the tests that run ``python -m mrvae.cli`` as a real subprocess.

Python imports ``sitecustomize`` at start-up from ``sys.path``; the tests put this folder first on
``PYTHONPATH`` and describe the faults in the environment variable ``MRVAE_TEST_FAULTS`` (JSON). Without
it this module does nothing. The library itself never reads the variable (nothing happens at import).

- ``step_sleep`` (seconds): every training step sleeps first, so that a signal or a kill sent after a
  progress line lands while training is still under way.
- ``pause_at`` (file names) and ``pause_s``: ``os.replace`` onto one of those names prints
  ``FAULT-PAUSE <name>`` to stderr and sleeps ``pause_s`` before renaming, so a kill sent on seeing that
  line lands in the middle of an atomic write (temporary file complete, not yet renamed).
"""

import json
import os

_SPEC = os.environ.get("MRVAE_TEST_FAULTS")

if _SPEC:
    import sys
    import time

    _settings = json.loads(_SPEC)
    _pause_at = set(_settings.get("pause_at", ()))
    _pause_s = float(_settings.get("pause_s", 0.0))
    _step_sleep = float(_settings.get("step_sleep", 0.0))
    _os_replace = os.replace

    def _replace(src, dst, *args, **kwargs):
        name = os.path.basename(os.fspath(dst))
        if name in _pause_at:
            sys.stderr.write(f"FAULT-PAUSE {name}\n")
            sys.stderr.flush()
            time.sleep(_pause_s)
        return _os_replace(src, dst, *args, **kwargs)

    os.replace = _replace

    if _step_sleep > 0:
        from mrvae.training import trainer as _trainer

        _train_step = _trainer.Trainer.train_step

        def _slow_train_step(self):
            time.sleep(_step_sleep)
            return _train_step(self)

        _trainer.Trainer.train_step = _slow_train_step
