"""nova-scheduler's filter that keeps a live image's clones on its host.

A clone resumes memory that exists on a few hosts only, so ``nova.api``'s
launch passes the scheduler hint ``gc_live_image_hosts: [<token>]``; this
filter lets through only the hosts the token names, and every host for a
request without the hint. Operators add it to nova.conf
(``etc/nova/nova.conf.fragment``)::

    [filter_scheduler]
    available_filters = nova.scheduler.filters.all_filters
    available_filters = gridcentric_storage.nova.scheduler_filter.LiveImageHostFilter
    enabled_filters = ...,LiveImageHostFilter
    [gridcentric]
    scheduler_hint_key = <the secret of gridcentric-api's [nova] scheduler_hint_key>

Why a token, not host names: a member can both send any scheduler hint (Nova's
schema lets unknown hints through) and read a server's hints back (compute API
microversion 2.100). Host names in the hint would show members where their
clones run, and a hint they write themselves would let them pin a server to a
host of their choosing and probe host names (NoValidHost or not). The token
(``nova.hint.seal``: Fernet, i.e. AES-CBC and HMAC-SHA256, under a key derived from
the shared secret) is opaque to members, cannot be forged, and is bound to the
project that launched: a hint that does not open under the key, or opens for
another project, passes no host at all (whatever its content, the answer is
the same NoValidHost). Re-sent within its project, a token only allows the
hosts gridcentric-api allowed that project already; it has no expiry, since
Nova runs the filters again, with the hints kept, when a clone moves.

The class subclasses Nova's ``BaseHostFilter``, so it is made on first
access (``LiveImageHostFilter``, a module attribute as Nova's loader asks
for it): this module imports without Nova, as every module of the package
must, and only nova-scheduler ever touches Nova's scheduler through it.
"""

import logging
from typing import Any

from gridcentric_storage.nova.hint import unseal

LOG = logging.getLogger(__name__)

#: The hint's name (``nova.api.HOSTS_HINT``; that module is not imported here).
HOSTS_HINT = 'gc_live_image_hosts'
#: Where nova-scheduler's nova.conf holds the secret shared with gridcentric-api.
KEY_GROUP, KEY_OPTION = 'gridcentric', 'scheduler_hint_key'


def allowed_hosts(spec_obj: Any, secret: str | None = None) -> list[str] | None:
    """The hosts a request's hint allows (none for a hint not sealed under
    ``secret`` for the request's project); None: the request has no such hint."""
    hints = spec_obj.scheduler_hints if spec_obj.obj_attr_is_set('scheduler_hints') \
        else None
    allowed = (hints or {}).get(HOSTS_HINT)
    if not allowed:
        return None
    # Nova keeps each hint as a list of strings: one token
    tokens = [allowed] if isinstance(allowed, str) else list(allowed)
    project_id = spec_obj.project_id if spec_obj.obj_attr_is_set('project_id') else None
    if len(tokens) != 1 or not isinstance(tokens[0], str):
        return []
    return unseal(secret, tokens[0], project_id)


def _make_class() -> type:
    import nova.conf
    from nova.scheduler import filters
    from oslo_config import cfg

    conf = nova.conf.CONF
    conf.register_opt(cfg.StrOpt(KEY_OPTION, secret=True, help=(
        "The secret shared with gridcentric-api's [nova] scheduler_hint_key: clones "
        'of live images are placed only with it')), group=KEY_GROUP)

    class LiveImageHostFilter(filters.BaseHostFilter):  # type: ignore[misc]
        """Pass only the hosts a live image's clones may run on."""

        RUN_ON_REBUILD = False

        def host_passes(self, host_state: Any, spec_obj: Any) -> bool:
            secret = getattr(conf, KEY_GROUP).get(KEY_OPTION)
            allowed = allowed_hosts(spec_obj, secret)
            if allowed is None:
                return True
            if not secret:
                LOG.error('A live image clone cannot be placed: nova.conf has no '
                          '[%s] %s', KEY_GROUP, KEY_OPTION)
            passes = host_state.host in allowed
            if not passes:
                LOG.debug('Host %s is not a live image host of the request',
                          host_state.host)
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
