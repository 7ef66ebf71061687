"""Ctrl-C and SIGTERM that no library can swallow while a run is open.

Some libraries catch ``KeyboardInterrupt`` and carry on: sbi's ``gradient_ascent`` (the rejection
sampler's bound, MAP) prints "Optimization was interrupted" and returns, so a Ctrl-C in the
diagnostics would only end that one search and the run would go on sampling for minutes. While a
run is open, both signals raise ``KeyboardInterrupt`` *and* set a latch; long loops call
:func:`raise_if_interrupted` between steps, and the run checks the latch before it closes FINISHED.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Any, Iterator, Optional

_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: the signal received since the latch was armed, or None
_received: Optional[int] = None
#: how many armed blocks are open
_depth = 0


def _handler(signum: int, frame: Any) -> None:
    global _received
    _received = signum
    raise KeyboardInterrupt(f"signal {signum}")


def pending() -> Optional[int]:
    """The signal received while armed and not yet acted on (None when there was none)."""
    return _received


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if a signal arrived and something swallowed its exception."""
    if _received is not None:
        raise KeyboardInterrupt(f"signal {_received}")


@contextmanager
def armed() -> Iterator[None]:
    """Latch SIGINT and SIGTERM for the block; restore the previous handlers after it.

    Blocks nest (a sweep's parent run around its children): the latch is cleared only when the
    outermost block is entered and left, so an inner run's interrupt still reaches the outer one.
    Outside the main thread signals cannot be handled, so the block runs with the handlers as they are.
    """
    global _received, _depth
    previous: dict[int, Any] = {}
    try:
        for signum in _SIGNALS:
            previous[signum] = signal.signal(signum, _handler)
    except ValueError:  # not the main thread
        pass
    if _depth == 0:
        _received = None
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            _received = None
        for signum, handler in previous.items():
            signal.signal(signum, handler)
