"""The request's own ``rank`` expression, e.g. ``free_capacity_gb - 10 * volume_count``.

Higher is better, as in OpenNebula's SCHED_DS_RANK. Booleans count as 1/0,
so ``rank: '"nvme" in tags'`` means "prefer nvme". A value that is not a finite
number, or an evaluation error, counts as 0: rank orders, it never rejects.
"""

from typing import Any

from gridcentric_storage.scheduler.base import Backend, BaseWeigher, all_finite_numbers
from gridcentric_storage.scheduler.request import RequestSpec


def rank_value(value: Any) -> float:
    """The weight of one rank result: finite numbers as they are, booleans 1/0, else 0."""
    if type(value) not in (int, float, bool):
        return 0.0
    try:
        number = float(value)
    except OverflowError:       # an int beyond float range
        return 0.0
    return number if number - number == 0 else 0.0


class RankWeigher(BaseWeigher):
    """Raw weight: the value of the request's rank expression for the backend."""

    def applies(self, request: RequestSpec) -> bool:
        return request.rank_expr is not None

    def weigh(self, backend: Backend, request: RequestSpec) -> float:
        if request.rank_expr is None:
            return 0.0
        return rank_value(request.rank_expr.evaluate_many([backend], None)[0])

    def weigh_all(self, backends: list[Backend], request: RequestSpec) -> list[float]:
        if request.rank_expr is None:
            return [0.0] * len(backends)
        values = request.rank_expr.evaluate_many(backends, None)
        if all_finite_numbers(values):
            return values
        return [rank_value(value) for value in values]
