"""kopf's limit on per-object workers, held only once kopf's indexes are complete.

kopf starts a worker per object, and each worker indexes its object and then waits until every
object of every indexed kind is indexed. With a worker limit, objects past the limit get no worker
until one finishes, and none finishes: an operator (re)started with more EcrImageTags, EcrTagPolicies
or Namespaces than the limit waited forever, with nothing handled (reproduced with 1,000 objects
and the limit of 256; kopf issue #1243, open, says to keep the limit above the objects). The limit
bounds what thousands of creations hold in memory later; while kopf lists what exists, every object
gets its worker, and objects in sync leave it at once (their resume does nothing).

kopf's scheduler compares its running workers with the limit (``len(running) < limit``); an int
subclass that says "below" while the indexes are incomplete is found by Python before int's own
comparison, so kopf needs no change and sees an int.
"""

from __future__ import annotations

from collections.abc import Callable


class WorkerLimit(int):
    """``limit`` for kopf's ``settings.queueing.worker_limit``, no limit until ``held()`` says so."""

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
