"""Choose one backend of the pool for a new volume: filter, weigh, explain.

Pure and synchronous: it takes the backends as plain dicts (from
``db.api.backend_get_all``) and touches neither the DB nor the network, so the
API can place a volume inside its request and tests need no fixtures. Filters
run one after another over the shrinking candidate list (the first failing
reason per backend is kept); weighers' raw values are min-max normalised to
[0, 1] over the candidates, multiplied by ``[scheduler]
<name>_weight_multiplier`` and summed; the highest total wins, ties go to the
alphabetically first name so placement is reproducible.

Example (a cheap and a dear backend, plus a disabled one)::

    placement = Scheduler().select(RequestSpec(size=10), db.backend_get_all())
    placement.explain() == {
        'backend': 'cheap', 'backend_id': '4a1c...', 'weight': 1000.0,
        'weights': {'cost': 1000.0, 'free_capacity': 0.0, 'volume_count': 0.0, 'rank': 0.0},
        'candidates': 2, 'filtered_out': 1, 'rejected_by': {'enabled': 1}}
"""

import dataclasses
import importlib
import itertools
import math
import operator
from collections.abc import Sequence
from typing import Any

from oslo_config import cfg
from stevedore import extension

from gridcentric_storage.common import exception
from gridcentric_storage.conf import CONF
from gridcentric_storage.scheduler.base import Backend, BaseFilter, BaseWeigher, is_number
from gridcentric_storage.scheduler.request import RequestSpec

__all__ = ['FILTERS_NAMESPACE', 'WEIGHERS_NAMESPACE', 'Placement', 'Scheduler',
           'load_plugin', 'normalise']

FILTERS_NAMESPACE = 'gridcentric_storage.scheduler.filters'
WEIGHERS_NAMESPACE = 'gridcentric_storage.scheduler.weighers'

_PREFIX = 'gridcentric_storage.scheduler.'
#: The built-in plugins, mirroring setup.cfg: they load without the package
#: being installed (tests, a source checkout); stevedore only adds extra ones.
BUILTIN_PLUGINS: dict[str, dict[str, str]] = {
    FILTERS_NAMESPACE: {
        'enabled': _PREFIX + 'filters.state:EnabledFilter',
        'up': _PREFIX + 'filters.state:UpFilter',
        'role': _PREFIX + 'filters.role:RoleFilter',
        'capacity': _PREFIX + 'filters.capacity:CapacityFilter',
        'tags': _PREFIX + 'filters.tags:TagsFilter',
        'availability_zone': _PREFIX + 'filters.availability_zone:AvailabilityZoneFilter',
        'capabilities': _PREFIX + 'filters.capabilities:CapabilitiesFilter',
        'requirements': _PREFIX + 'filters.requirements:RequirementsFilter',
    },
    WEIGHERS_NAMESPACE: {
        'cost': _PREFIX + 'weighers.cost:CostWeigher',
        'free_capacity': _PREFIX + 'weighers.capacity:FreeCapacityWeigher',
        'volume_count': _PREFIX + 'weighers.volume_count:VolumeCountWeigher',
        'rank': _PREFIX + 'weighers.rank:RankWeigher',
    },
}

#: How many rejected backends ``NoValidBackend`` names before summarising.
MAX_LISTED = 20


def load_plugin(namespace: str, name: str) -> type:
    """The class for ``name``: built-in first, then stevedore entry points."""
    kind = 'filter' if namespace == FILTERS_NAMESPACE else 'weigher'
    base = BaseFilter if namespace == FILTERS_NAMESPACE else BaseWeigher
    builtin = BUILTIN_PLUGINS[namespace]
    if name in builtin:
        module, _, attr = builtin[name].partition(':')
        plugin = getattr(importlib.import_module(module), attr)
    else:
        manager: Any = extension.ExtensionManager(namespace=namespace, invoke_on_load=False)
        found = {ext.name: ext.plugin for ext in manager}
        if name not in found:
            raise exception.UnknownPlugin(kind=kind, name=name,
                                available=', '.join(sorted(set(builtin) | set(found))))
        plugin = found[name]
    if not (isinstance(plugin, type) and issubclass(plugin, base)):
        raise exception.UnknownPlugin(kind=kind, name=name,
                            available='(%r is not a %s)' % (plugin, base.__name__))
    return plugin


@dataclasses.dataclass(frozen=True)
class Placement:
    """The chosen backend and why it won."""

    backend: Backend
    weight: float
    #: Each weigher's contribution (normalised value x multiplier) to ``weight``.
    weights: dict[str, float]
    candidates: int
    filtered_out: int
    #: How many backends each filter rejected, in filter order.
    rejected_by: dict[str, int]

    def explain(self) -> dict[str, Any]:
        """Short, JSON-friendly summary for logs and the volume's placement field."""
        return {'backend': self.backend.get('name'),
                'backend_id': self.backend.get('id'),
                'weight': round(self.weight, 6),
                'weights': {name: round(value, 6) for name, value in self.weights.items()},
                'candidates': self.candidates,
                'filtered_out': self.filtered_out,
                'rejected_by': dict(self.rejected_by)}


def normalise(raw: Sequence[float], multiplier: float) -> list[float] | None:
    """Min-max scale ``raw`` to [0, 1] and multiply; None when all values are equal.

    Values that are not finite numbers (None, inf, nan) mean "unknown": they are
    placed one unit beyond the least preferred known value (below the minimum
    for a positive multiplier, above the maximum for a negative one), so they
    always rank last.
    """
    scaled = _scale(raw, multiplier)
    if scaled is None:
        return None
    values, low, scale = scaled
    return [(value - low) * scale for value in values]


def _scale(raw: Sequence[float], multiplier: float
           ) -> tuple[Sequence[float], float, float] | None:
    """``(values, low, scale)`` such that weight = (value - low) * scale; see normalise."""
    try:
        finite = math.isfinite(sum(raw))    # C speed; fails on None, inf, nan, 'x'...
    except (TypeError, OverflowError):
        finite = False
    if not finite:
        known = [value for value in raw if is_number(value)]
        if not known:
            return None
        unknown = min(known) - 1.0 if multiplier > 0 else max(known) + 1.0
        raw = [value if is_number(value) else unknown for value in raw]
    low, high = min(raw), max(raw)
    if high == low:
        return None
    return raw, low, multiplier / (high - low)


class Scheduler:
    """Built once per service from ``[scheduler]``; ``select`` is thread-safe.

    Multipliers are read at construction: rebuild the scheduler to apply a
    configuration change.
    """

    def __init__(self, conf: cfg.ConfigOpts = CONF) -> None:
        group = conf.scheduler
        self.filters: list[tuple[str, BaseFilter]] = [
            (name, load_plugin(FILTERS_NAMESPACE, name)()) for name in group.enabled_filters]
        self.weighers: list[tuple[str, BaseWeigher, float]] = [
            (name, load_plugin(WEIGHERS_NAMESPACE, name)(),
             float(getattr(group, '%s_weight_multiplier' % name, 1.0)))
            for name in group.enabled_weighers]

    def select(self, request: RequestSpec, backends: Sequence[Backend]) -> Placement:
        """The best backend for ``request``; raises ``NoValidBackend`` (400) if none fits."""
        if not backends:
            raise _no_valid_backend('no backends are registered.', {}, {})
        considered = list(backends)
        if request.backend_id is not None:
            considered = [b for b in considered if b.get('id') == request.backend_id]
            if not considered:
                raise _no_valid_backend('backend %s is not registered.' % request.backend_id,
                                        {}, {})
        rejected_by: dict[str, int] = {}
        candidates = self._filter(request, considered, rejected_by, None)
        if not candidates:
            # Only now is it worth formatting a reason for every backend.
            reasons: dict[str, str] = {}
            self._filter(request, considered, {}, reasons)
            ordered = {b['name']: reasons[b['name']] for b in considered if b['name'] in reasons}
            raise _no_valid_backend(_describe(ordered, rejected_by), ordered, rejected_by)
        return self._weigh(request, candidates, len(considered), rejected_by)

    def _filter(self, request: RequestSpec, candidates: list[Backend],
                rejected_by: dict[str, int], reasons: dict[str, str] | None) -> list[Backend]:
        for name, backend_filter in self.filters:
            if not candidates:
                break
            if backend_filter.applies(request):
                before = len(candidates)
                candidates = backend_filter.filter_all(candidates, request, reasons)
                if len(candidates) < before:
                    rejected_by[name] = before - len(candidates)
        return candidates

    def _weigh(self, request: RequestSpec, candidates: list[Backend], considered: int,
               rejected_by: dict[str, int]) -> Placement:
        count = len(candidates)
        # sum((value - low) * scale) = sum(value * scale) - sum(low * scale): the
        # second term is the same for every backend, so the ranking only needs
        # the first, which C-level maps compute without a Python loop.
        totals: list[float] = [0.0] * count
        parts: dict[str, tuple[Sequence[float], float, float] | None] = {}
        for name, weigher, multiplier in self.weighers:
            scaled = None
            if count > 1 and multiplier and weigher.applies(request):
                scaled = _scale(weigher.weigh_all(candidates, request), multiplier)
            if scaled is not None:
                values, _, scale = scaled
                totals = list(map(operator.add, totals,
                                  map(operator.mul, values, itertools.repeat(scale))))
            parts[name] = scaled
        best = max(totals)
        winner = totals.index(best)
        if totals.count(best) > 1:      # a tie: the first name wins, reproducibly
            winner = min((i for i, total in enumerate(totals) if total == best),
                         key=lambda i: str(candidates[i].get('name')))
        weights = {name: (p[0][winner] - p[1]) * p[2] if p else 0.0
                   for name, p in parts.items()}
        return Placement(backend=candidates[winner], weight=sum(weights.values()),
                         weights=weights,
                         candidates=count, filtered_out=considered - count,
                         rejected_by=rejected_by)


def _describe(reasons: dict[str, str], rejected_by: dict[str, int]) -> str:
    """One line a user can act on, however large the pool."""
    listed = '; '.join('%s: %s' % item for item in list(reasons.items())[:MAX_LISTED])
    total = len(reasons)
    text = ('The only backend was rejected: %s.' % listed if total == 1
            else 'All %d backends were rejected: %s' % (total, listed))
    if total > MAX_LISTED:
        text += '; ... and %d more (by filter: %s)' % (
            total - MAX_LISTED,
            ', '.join('%s %d' % item for item in rejected_by.items()))
    return text + ('' if total == 1 else '.')


def _no_valid_backend(text: str, reasons: dict[str, str],
                      rejected_by: dict[str, int]) -> exception.NoValidBackend:
    error = exception.NoValidBackend(reason=text)
    # Attached for callers: the API can show the full map, tests assert on it.
    error.reasons = reasons             # type: ignore[attr-defined]
    error.rejected_by = rejected_by     # type: ignore[attr-defined]
    return error
