"""Room for the new volume, with Cinder's CapacityFilter arithmetic.

Worked example, a thick backend: total 1000 GiB, free 180 GiB, 10% reserved
-> usable 180 - 100 = 80 GiB, so a 120 GiB volume is rejected with
"needs 120 GiB, 80.0 GiB free after 10% reserved".

Thin backend (``thin_provisioning_support`` true and ratio >= 1): total 100,
free 50, ratio 2.0, provisioned 150 -> a 60 GiB volume would make
(150 + 60) / 100 = 2.1 > 2.0: rejected; a 40 GiB one gives 1.9 and a virtual
free space of 50 * 2.0 = 100 >= 40: accepted.

Unknown (null) or infinite capacity passes, as in Cinder: the driver cannot
tell, and refusing would make such backends unusable.
"""

from gridcentric_storage.scheduler.base import Backend, BaseFilter, capability_bool, is_number
from gridcentric_storage.scheduler.request import RequestSpec

_INF = float('inf')


class CapacityFilter(BaseFilter):
    """Enough free (thick) or virtual free (thin, over-subscribed) space for ``size``."""

    def passes(self, backend: Backend, request: RequestSpec) -> str | None:
        total, free = backend.get('total_capacity_gb'), backend.get('free_capacity_gb')
        if not (is_number(total) and is_number(free)):
            return None
        size = request.size
        percent = backend.get('reserved_percentage') or 0
        usable = free - total * percent / 100.0
        after = ' after %s%% reserved' % percent if percent else ''
        ratio = backend.get('max_over_subscription_ratio') or 1.0
        capabilities = backend.get('capabilities') or {}
        if ratio >= 1 and capability_bool(capabilities.get('thin_provisioning_support')):
            if total <= 0:
                return 'needs %d GiB, backend reports %s GiB total capacity' % (size, total)
            provisioned = (backend.get('provisioned_capacity_gb') or 0.0) + size
            if provisioned / total > ratio:
                return ('needs %d GiB, %.1f GiB provisioned would exceed %g x %.1f GiB '
                        '(max over-subscription)' % (size, provisioned, ratio, total))
            if usable * ratio < size:
                return ('needs %d GiB, %.1f GiB virtual free (%.1f GiB free%s x %g)'
                        % (size, usable * ratio, usable, after, ratio))
            return None
        if usable < size:
            return 'needs %d GiB, %.1f GiB free%s' % (size, usable, after)
        return None

    def flags(self, backends: list[Backend], request: RequestSpec) -> list[bool]:
        """The arithmetic of :meth:`passes`, inlined for the DB's usual types.

        Anything unusual (nulls, ints, infinities, a thin flag that is not a
        real boolean) is left to :meth:`passes`, so both always agree.
        """
        size, passes = request.size, self.passes
        flags: list[bool] = []
        append = flags.append
        for backend in backends:
            total, free = backend['total_capacity_gb'], backend['free_capacity_gb']
            thin = backend['capabilities'].get('thin_provisioning_support')
            if (type(total) is not float or type(free) is not float or not 0 < total < _INF
                    or not -_INF < free < _INF or (thin is not True and thin is not False
                                                   and thin is not None)):
                append(passes(backend, request) is None)
                continue
            usable = free - total * (backend['reserved_percentage'] or 0) / 100.0
            ratio = backend['max_over_subscription_ratio'] or 1.0
            if thin and ratio >= 1:
                provisioned = backend['provisioned_capacity_gb'] or 0.0
                append((provisioned + size) / total <= ratio and usable * ratio >= size)
            else:
                append(usable >= size)
        return flags
