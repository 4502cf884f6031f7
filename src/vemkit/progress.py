"""One progress mechanism for long work.

Library functions accept an optional :class:`Progress` and report through it;
front ends decide how it is shown (a terminal bar in the CLI, a database row in
the job server). Nothing is printed by library code itself.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar, runtime_checkable

__all__ = ["NullProgress", "Progress", "TqdmProgress", "track"]

T = TypeVar("T")


@runtime_checkable
class Progress(Protocol):
    """Receives progress of one task at a time: ``start``, ``advance``..., ``finish``."""

    def start(self, total: int, description: str) -> None:
        """Begin a task of ``total`` steps."""

    def advance(self, steps: int = 1) -> None:
        """Record that ``steps`` more steps are done."""

    def finish(self) -> None:
        """End the current task."""


class NullProgress:
    """Progress that shows nothing (the default for library calls)."""

    def start(self, total: int, description: str) -> None:  # noqa: D102
        pass

    def advance(self, steps: int = 1) -> None:  # noqa: D102
        pass

    def finish(self) -> None:  # noqa: D102
        pass


class TqdmProgress:
    """Progress shown as a tqdm bar on stderr (used by the CLI).

    Parameters
    ----------
    enabled : bool
        When false nothing is drawn (e.g. ``--quiet`` or a non-interactive run).
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._bar = None

    def start(self, total: int, description: str) -> None:  # noqa: D102
        from tqdm.auto import tqdm

        self.finish()
        self._bar = tqdm(
            total=total,
            desc=description,
            disable=not self._enabled,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
        )

    def advance(self, steps: int = 1) -> None:  # noqa: D102
        if self._bar is not None:
            self._bar.update(steps)

    def finish(self) -> None:  # noqa: D102
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def track(
    items: Iterable[T], progress: Progress | None, *, total: int, description: str
) -> Iterator[T]:
    """Iterate over ``items`` while reporting one step per item to ``progress``."""
    reporter = progress if progress is not None else NullProgress()
    reporter.start(total, description)
    try:
        for item in items:
            yield item
            reporter.advance(1)
    finally:
        reporter.finish()
