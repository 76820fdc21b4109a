"""nova-scheduler's filter that keeps a live image's clones on its host.

A clone resumes memory that exists on one host only, so ``nova.api``'s
launch passes the scheduler hint ``gc_live_image_hosts: [<host>]``; this
filter lets through only those hosts, and every host for a request without
the hint. Operators add it to nova.conf (``etc/nova/nova.conf.fragment``)::

    [filter_scheduler]
    available_filters = nova.scheduler.filters.all_filters
    available_filters = gridcentric_storage.nova.scheduler_filter.LiveImageHostFilter
    enabled_filters = ...,LiveImageHostFilter

The class subclasses Nova's ``BaseHostFilter``, so it is made on first
access (``LiveImageHostFilter``, a module attribute as Nova's loader asks
for it): this module imports without Nova, as every module of the package
must, and only nova-scheduler ever touches Nova's scheduler through it.
"""

import logging
from typing import Any

LOG = logging.getLogger(__name__)

#: The hint's name (``nova.api.HOSTS_HINT``; that module is not imported here).
HOSTS_HINT = 'gc_live_image_hosts'


def allowed_hosts(spec_obj: Any) -> list[str] | None:
    """The hosts a request's hint allows; None: the request has no such hint."""
    hints = spec_obj.scheduler_hints if spec_obj.obj_attr_is_set('scheduler_hints') \
        else None
    allowed = (hints or {}).get(HOSTS_HINT)
    if not allowed:
        return None
    # Nova keeps each hint as a list of strings.
    return [allowed] if isinstance(allowed, str) else list(allowed)


def _make_class() -> type:
    from nova.scheduler import filters

    class LiveImageHostFilter(filters.BaseHostFilter):  # type: ignore[misc]
        """Pass only the hosts a live image's clones may run on."""

        RUN_ON_REBUILD = False

        def host_passes(self, host_state: Any, spec_obj: Any) -> bool:
            allowed = allowed_hosts(spec_obj)
            if allowed is None:
                return True
            passes = host_state.host in allowed
            if not passes:
                LOG.debug('Host %s is not the live image host %s', host_state.host, allowed)
            return passes

    LiveImageHostFilter.__module__ = __name__
    return LiveImageHostFilter


_classes: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    if name != 'LiveImageHostFilter':
        raise AttributeError('module %r has no attribute %r' % (__name__, name))
    if name not in _classes:
        _classes[name] = _make_class()
    return _classes[name]
