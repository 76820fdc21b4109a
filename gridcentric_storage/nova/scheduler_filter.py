"""nova-scheduler's filter that keeps a live image's clones on its host.

A clone resumes memory that exists on one host only, so ``nova.api``'s
launch passes the scheduler hint ``gc_live_image_hosts: [<host>]``; this
filter lets through only those hosts, and every host for a request without
the hint. Operators add it to nova.conf (``etc/nova/nova.conf.fragment``)::

    [filter_scheduler]
    available_filters = nova.scheduler.filters.all_filters
    available_filters = gridcentric_storage.nova.scheduler_filter.LiveImageHostFilter
    enabled_filters = ...,LiveImageHostFilter

This module is loaded by nova-scheduler only; it is the one place that
imports Nova's scheduler.
"""

import logging
from typing import Any

from nova.scheduler import filters

LOG = logging.getLogger(__name__)

#: The hint's name (``nova.api.HOSTS_HINT``; that module is not imported here).
HOSTS_HINT = 'gc_live_image_hosts'


class LiveImageHostFilter(filters.BaseHostFilter):  # type: ignore[misc]
    """Pass only the hosts a live image's clones may run on."""

    RUN_ON_REBUILD = False

    def host_passes(self, host_state: Any, spec_obj: Any) -> bool:
        hints = spec_obj.scheduler_hints if spec_obj.obj_attr_is_set(
            'scheduler_hints') else None
        allowed = (hints or {}).get(HOSTS_HINT)
        if not allowed:
            return True
        # Nova keeps each hint as a list of strings.
        allowed = [allowed] if isinstance(allowed, str) else list(allowed)
        passes = host_state.host in allowed
        if not passes:
            LOG.debug('Host %s is not the live image host %s', host_state.host, allowed)
        return passes
