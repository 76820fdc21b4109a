"""The request's own ``requirements`` expression: ``free_capacity_gb > 100 and "ssd" in tags``.

The expression was compiled with the request (``scheduler.expressions``). A
backend for which it cannot be evaluated (say ``free_capacity_gb`` is null) is
rejected with the evaluation error as the reason, never with a 500.
"""

import itertools
from typing import Any

from gridcentric_storage.scheduler.base import Backend, BaseFilter
from gridcentric_storage.scheduler.expressions import EvaluationError
from gridcentric_storage.scheduler.request import RequestSpec


class RequirementsFilter(BaseFilter):
    """Backends for which the requirements expression is true (Python truthiness)."""

    def applies(self, request: RequestSpec) -> bool:
        return request.requirements_expr is not None

    def passes(self, backend: Backend, request: RequestSpec) -> str | None:
        if request.requirements_expr is None:
            return None
        return self._reason(request, request.requirements_expr.evaluate_each([backend])[0])

    def filter_all(self, backends: list[Backend], request: RequestSpec,
                   reasons: dict[str, str] | None = None) -> list[Backend]:
        """One batch evaluation gives both the verdicts and the reasons."""
        if request.requirements_expr is None:
            return backends
        values = request.requirements_expr.evaluate_each(backends)
        verdicts = values
        if EvaluationError in map(type, values):    # errors are truthy objects: reject them
            verdicts = [type(value) is not EvaluationError and value for value in values]
        kept = list(itertools.compress(backends, verdicts))
        if reasons is not None and len(kept) < len(backends):
            for backend, value in zip(backends, values, strict=True):
                reason = self._reason(request, value)
                if reason is not None:
                    reasons[backend['name']] = reason
        return kept

    @staticmethod
    def _reason(request: RequestSpec, value: Any) -> str | None:
        if type(value) is EvaluationError:
            return 'requirements could not be evaluated: %s' % value
        if value:
            return None
        return 'requirements false: %s' % (request.requirements or '')
