"""What kopf needs to start over thousands of existing objects.

kopf starts a worker per object, and each worker indexes its object and then waits until every
object of every indexed kind is indexed, before any handler runs. Two things broke there:

- **Its worker limit deadlocked.** Objects past the limit get no worker until one finishes, and none
  finishes: an operator (re)started with more EcrImageTags, EcrTagPolicies or Namespaces than the
  limit waited forever, nothing handled (reproduced with 1,000 objects and the limit of 256; kopf
  issue #1243, open, says to keep the limit above the number of objects). The limit bounds what
  thousands of creations hold in memory later, so :class:`WorkerLimit` holds it only once the
  indexes are complete: while kopf lists what exists, every object gets its worker.
- **Its readiness wait was quadratic.** The waiting workers share one condition, and every object's
  readiness toggle, made and dropped, woke all of them (``notify_all``) to find that the indexes
  were still incomplete: a restart over 5,000 objects spent 205 s of CPU before the first handler
  ran (py-spy: three quarters of it in those wake-ups). :func:`notify_readiness_on_change` makes the
  toggle sets notify only when their state (on or off) changes, the only thing their waiters wait
  for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from kopf._cogs.aiokits import aiotoggles  # kopf's own primitive: not part of its public API


class WorkerLimit(int):
    """``limit`` for kopf's ``settings.queueing.worker_limit``, no limit until ``held()`` says so.

    kopf's scheduler compares its running workers with the limit (``len(running) < limit``); Python
    asks an int subclass's reflected comparison first, so kopf sees an int and needs no change."""

    held: Callable[[], bool]

    def __new__(cls, limit: int, held: Callable[[], bool]) -> WorkerLimit:
        made = super().__new__(cls, limit)
        made.held = held
        return made

    def __gt__(self, other: object) -> bool:  # ``running < limit``: its reflection comes here first
        return not self.held() or (isinstance(other, int) and int(self) > other)

    def __ge__(self, other: object) -> bool:
        return not self.held() or (isinstance(other, int) and int(self) >= other)

    def __lt__(self, other: object) -> bool:
        return self.held() and isinstance(other, int) and int(self) < other

    def __le__(self, other: object) -> bool:
        return self.held() and isinstance(other, int) and int(self) <= other

    def __repr__(self) -> str:
        return f"WorkerLimit({int(self)}, {'held' if self.held() else 'not held yet'})"


async def _make_toggle(
    self: aiotoggles.ToggleSet, state: bool = False, /, *, name: str | None = None
) -> aiotoggles.Toggle:
    toggle = aiotoggles.Toggle(state, name=name, condition=self._condition)
    async with self._condition:
        before = self.is_on()
        self._toggles.add(toggle)
        if self.is_on() != before:
            self._condition.notify_all()
    return toggle


async def _drop_toggles(self: aiotoggles.ToggleSet, toggles: Iterable[aiotoggles.Toggle]) -> None:
    async with self._condition:
        before = self.is_on()
        self._toggles.difference_update(toggles)
        if self.is_on() != before:
            self._condition.notify_all()


async def _drop_toggle(self: aiotoggles.ToggleSet, toggle: aiotoggles.Toggle) -> None:
    await _drop_toggles(self, (toggle,))


def notify_readiness_on_change() -> None:
    """Make kopf's toggle sets wake their waiters only when the set's state changes (idempotent).
    A toggle turned on or off still wakes them, as kopf does: the set's state may follow it."""
    cls = aiotoggles.ToggleSet
    cls.make_toggle = _make_toggle  # type: ignore[method-assign,assignment]
    cls.drop_toggle = _drop_toggle  # type: ignore[method-assign]
    cls.drop_toggles = _drop_toggles  # type: ignore[method-assign]
