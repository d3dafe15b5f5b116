"""Things a process starts and must stop: a child server, a daemon, a card's reader link.

:class:`Service` gives ``start()``/``stop()`` objects the context-manager form,
and, for those that own an outside process, a stop at interpreter exit that
runs only in the process that started it (a forked child inherits the atexit
registration but does not own the server).
"""

from __future__ import annotations

import atexit
import os
from types import TracebackType
from typing import Self


class Service:
    """Base of objects with ``start()`` and ``stop()``; ``stop()`` must be safe to call twice."""

    _owner_pid: int | None = None
    _started = False

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _stop_at_exit(self) -> None:
        if os.getpid() == self._owner_pid:
            self.stop()

    def _claim_start(self) -> None:
        """Call first in ``start()`` of a one-shot service that owns an outside process:
        refuses a second start, and has the process stopped at exit if the owner forgets."""
        if self._started:
            raise RuntimeError(f"a {type(self).__name__} can be started only once")
        self._started = True
        self._owner_pid = os.getpid()
        atexit.register(self._stop_at_exit)

    def _unregister_stop_at_exit(self) -> None:
        atexit.unregister(self._stop_at_exit)
