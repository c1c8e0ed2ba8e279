"""`ctx.track(iterable)`: one loop drives a tqdm bar and the stage's progress events."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

Report = Callable[..., None]


def track(items: Iterable[T], report: Report, *, total: int | None = None,
          desc: str | None = None, every_s: float = 1.0, **tqdm_kw: Any) -> Iterator[T]:
    """Yield `items` under a tqdm bar; report `progress(i/total, iteration=i,
    max_iterations=total)` at each tenth of the way and at least every `every_s` seconds,
    so a fast loop sends about ten events and a slow one shows it is alive.

    Without a known total (no `len()` and no `total=`) only the bar moves: progress is a
    fraction, and there is nothing to divide by.
    """
    from tqdm.auto import tqdm

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    last, tenth = time.monotonic(), 0
    done = 0
    with tqdm(items, total=total, desc=desc, **tqdm_kw) as bar:
        for item in bar:
            yield item
            done += 1
            if not total:
                continue
            now = time.monotonic()
            if done * 10 // total > tenth or now - last >= every_s:
                report(min(done / total, 1.0), iteration=done, max_iterations=total)
                last, tenth = now, done * 10 // total
