"""The demo's terminal: scrolling lines, and the dispatcher's status on the bottom line."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from typing import TextIO


class Console:
    """Lines scroll; on a terminal the dispatcher's status stays on the bottom line."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self._out = out
        self._tty = out.isatty()
        self._status = ""
        self._settled = False
        self._reader_gone = False

    def line(self, who: str, text: str) -> None:
        for part in text.splitlines() or [""]:
            row = f"{who:<10} {part}"
            self._write(f"\r\x1b[K{row}\n{self._status}" if self._tty else f"{row}\n")

    def status(self, who: str, text: str) -> None:
        if self._settled:
            return
        if not self._tty:
            self.line(who, text)
            return
        width = shutil.get_terminal_size((100, 24)).columns - 1
        self._status = f"{who:<10} {text}"[:width]
        self._write(f"\r\x1b[K{self._status}")

    def settle(self) -> None:
        """Leave the status line where it is, and show no more: the demo is stopping."""
        self._settled = True
        if self._status:
            self._status = ""
            self._write("\n")

    def _write(self, text: str) -> None:
        if self._reader_gone:
            return
        try:
            self._out.write(text)
            self._out.flush()
        except BrokenPipeError:
            self._lose_reader()

    def _lose_reader(self) -> None:
        """The reader of our output is gone (`make run | tee log`, then Ctrl-C ends tee first).

        The demo must still stop its children and clean up, so output stops instead of
        raising. The descriptor now points at /dev/null, or the interpreter's last flush of
        what is still buffered would fail again (and print a traceback) at exit.
        """
        self._reader_gone = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._out.fileno())
            os.close(devnull)
