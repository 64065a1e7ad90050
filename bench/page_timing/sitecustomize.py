"""The benchmark's probe in the app's server: each script run's wall time, appended as a JSON line.

``bench_pages.py`` puts this folder on the server's ``PYTHONPATH`` and names the file in
``RUNLEDGER_BENCH_SCRIPT_RUNS``; nothing else loads it, and without that variable it does nothing. It lets
the benchmark split a page's time into the server's (the script runs inside the navigation's window) and
the browser's (the rest: transfer, JavaScript, drawing). With ``RUNLEDGER_BENCH_PROFILE_DIR`` set too, each
script run is also profiled (cProfile, the script thread only) into that folder, numbered in order.
"""

from __future__ import annotations

import os

_OUT = os.environ.get("RUNLEDGER_BENCH_SCRIPT_RUNS")
_PROFILES = os.environ.get("RUNLEDGER_BENCH_PROFILE_DIR")

if _OUT:
    import json
    import threading
    import time
    from typing import Any

    from streamlit.runtime.scriptrunner import script_runner

    _lock = threading.Lock()
    _original = script_runner.ScriptRunner._run_script
    _count = [0]

    def _timed_run_script(self: Any, rerun_data: Any) -> None:
        start, cpu = time.time(), time.thread_time()
        profile = None
        if _PROFILES:
            import cProfile

            profile = cProfile.Profile()
            profile.enable()
        try:
            _original(self, rerun_data)
        finally:
            if profile is not None:
                profile.disable()
                with _lock:
                    _count[0] += 1
                    n = _count[0]
                page = (getattr(rerun_data, "page_name", "") or "app").replace("/", "_")
                profile.dump_stats(os.path.join(_PROFILES, f"{n:03d}-{page}.prof"))
            line = json.dumps({"start": start, "end": time.time(), "thread_cpu": time.thread_time() - cpu,
                               "page": getattr(rerun_data, "page_name", "") or "",
                               "query": getattr(rerun_data, "query_string", "") or ""})
            with _lock, open(_OUT, "a") as f:
                f.write(line + "\n")

    script_runner.ScriptRunner._run_script = _timed_run_script  # type: ignore[method-assign]
