"""Contracts for placement plugins: filters say *why not*, weighers say *how good*.

A filter returns ``None`` when a backend may hold the new volume and otherwise
a short reason. The first failing reason per backend is what the user reads in
``NoValidBackend``, so reasons carry the numbers involved ("needs 120 GiB,
80.0 GiB free after 10% reserved") rather than just the filter's name.

A weigher returns a raw float per backend; the scheduler min-max normalises the
raw values over the candidates and applies ``[scheduler]
<name>_weight_multiplier``, so a weigher never needs to know the scale of the
others. Return :data:`UNKNOWN` when a backend cannot be judged: it then ranks
below every backend that can, whatever the multiplier's sign (Cinder's rule for
backends reporting 'unknown' or 'infinite' capacity).

Plugins are stateless: one instance serves every request, from any thread.
Third-party ones are registered as entry points in the
``gridcentric_storage.scheduler.filters`` / ``...weighers`` namespaces::

    class EvenCostFilter(BaseFilter):
        '''Only backends with an even cost (an example, not a good idea).'''

        def passes(self, backend, request):
            return None if backend['cost'] % 2 == 0 else 'cost %d is odd' % backend['cost']
"""

import abc
import itertools
import math
import operator
import typing
from collections.abc import Sequence
from typing import Any

from gridcentric_storage.db import records

if typing.TYPE_CHECKING:
    from gridcentric_storage.scheduler.request import RequestSpec

__all__ = ['UNKNOWN', 'AttributeWeigher', 'Backend', 'BaseFilter', 'BaseWeigher',
           'all_finite_numbers', 'capability_bool', 'is_number']

#: A backend as returned by ``db.api.backend_get_all``; plugins must not modify it.
Backend = records.Backend

#: Raw weight meaning "cannot tell"; ranked last (see the module docstring).
UNKNOWN = float('-inf')

_PLAIN_NUMBERS = frozenset((int, float))
#: What a fast path may raise on a malformed backend dict (missing key, null...).
_MALFORMED = (LookupError, TypeError, AttributeError, ValueError, ArithmeticError)
_TRUE = frozenset(('true', '<is> true'))
_FALSE = frozenset(('false', '<is> false'))


def is_number(value: Any) -> typing.TypeGuard[float]:
    """True for finite ints and floats; bools, None and 'unknown'/inf are not numbers."""
    return type(value) in _PLAIN_NUMBERS and value - value == 0


def capability_bool(value: Any) -> bool | None:
    """Read a Cinder-style boolean capability: True, 'True', '<is> True' all mean True.

    Drivers are inconsistent about how they report booleans; None means the
    value is absent or not a boolean at all.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


class BaseFilter(abc.ABC):
    """Decides whether one backend may hold the requested volume.

    :meth:`passes` is the definition. :meth:`flags` is an optional fast path
    over the whole candidate list (a comprehension costs a fraction of a call
    per backend, which matters at 10,000 backends); it must agree with
    :meth:`passes` and may raise on an unusual backend dict, in which case the
    scheduler falls back to :meth:`passes` one backend at a time.
    """

    def applies(self, request: 'RequestSpec') -> bool:
        """False when the request asks nothing of this filter, so it is skipped."""
        return True

    @abc.abstractmethod
    def passes(self, backend: Backend, request: 'RequestSpec') -> str | None:
        """``None`` if ``backend`` is acceptable, otherwise why not (short, human)."""

    def flags(self, backends: list[Backend], request: 'RequestSpec') -> list[bool] | None:
        """``passes(b) is None`` for every backend, computed quickly; None if not provided."""
        return None

    def filter_all(self, backends: list[Backend], request: 'RequestSpec',
                   reasons: dict[str, str] | None = None) -> list[Backend]:
        """Backends that pass, in order.

        With a ``reasons`` dict, also records why each other backend failed;
        the scheduler asks for reasons only once nothing passed, since
        formatting thousands of them would dominate a successful placement.
        """
        passes = self.passes
        try:
            flags = self.flags(backends, request)
        except _MALFORMED:
            flags = None
        if flags is None:
            flags = [passes(backend, request) is None for backend in backends]
        kept = list(itertools.compress(backends, flags))
        if reasons is not None and len(kept) < len(backends):
            for backend in itertools.compress(backends, map(operator.not_, flags)):
                reasons[backend['name']] = (passes(backend, request)
                                            or 'rejected by %s' % type(self).__name__)
        return kept


class BaseWeigher(abc.ABC):
    """Scores backends that passed every filter; higher raw values are better."""

    def applies(self, request: 'RequestSpec') -> bool:
        """False when every backend would score the same, so the weigher is skipped."""
        return True

    @abc.abstractmethod
    def weigh(self, backend: Backend, request: 'RequestSpec') -> float:
        """Raw score of ``backend``, or :data:`UNKNOWN`."""

    def weigh_all(self, backends: list[Backend], request: 'RequestSpec') -> list[float]:
        """Raw scores of all candidates, in order; override for a faster batch version."""
        weigh = self.weigh
        return [weigh(backend, request) for backend in backends]


class AttributeWeigher(BaseWeigher):
    """Weighs one numeric backend attribute; ``sign = -1`` makes lower values better.

    ``missing`` is the raw weight of a backend whose attribute is null or not a
    finite number.
    """

    attribute: typing.ClassVar[str]
    sign: typing.ClassVar[float] = 1.0
    missing: typing.ClassVar[float] = UNKNOWN

    def weigh(self, backend: Backend, request: 'RequestSpec') -> float:
        value = backend.get(self.attribute)
        return self.sign * value if is_number(value) else self.missing

    def weigh_all(self, backends: list[Backend], request: 'RequestSpec') -> list[float]:
        key = self.attribute
        values: list[Any] = [backend.get(key) for backend in backends]
        if not all_finite_numbers(values):
            return super().weigh_all(backends, request)     # nulls, strings: one by one
        return values if self.sign == 1 else [-value for value in values]


def all_finite_numbers(values: Sequence[Any]) -> bool:
    """True if every value is a finite int or float (checked at C speed)."""
    if not _PLAIN_NUMBERS.issuperset(map(type, values)):
        return False
    try:
        return math.isfinite(sum(values))
    except OverflowError:           # an int too large for a float
        return False
