"""A child process whose stdout lines arrive on a queue, so a test can wait for one with a timeout (and
SIGKILL the process at a line it chose); its stderr goes to a file, read back when something fails."""

from __future__ import annotations

import queue
import subprocess
import threading
from pathlib import Path


class LineProcess:
    def __init__(self, args: list[str], stderr_path: Path, stdin: bool = False) -> None:
        self.log = open(stderr_path, "a+")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE if stdin else None, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # the process closed its stdout: it ended

    def next_line(self, timeout: float) -> str | None:
        """The next line, None once the process ended; ``queue.Empty`` if none came within ``timeout``."""
        return self.lines.get(timeout=timeout)

    def stderr_tail(self, chars: int = 3000) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-chars:]
