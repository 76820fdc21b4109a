"""Helpers shared by controllers: pagination, links, time formatting."""

import datetime
import re
from collections.abc import Iterable, Mapping
from typing import Any

from oslo_config import cfg

from gridcentric_storage.api import policy, validation

CONF = cfg.CONF
#: An absolute path in a message: ``/`` after a start, a space, a quote or
#: ``=``, then at least one more path character.
_HOST_PATH = re.compile(r'(?<![\w.:/-])/[\w.@%+~-]+(?:/[\w.@%+~-]*)*')


def isotime(value: datetime.datetime | None) -> str | None:
    return value.strftime('%Y-%m-%dT%H:%M:%S.%f') if value else None


def listing_project(req: Any, all_tenants_rule: str) -> str | None:
    """The project a listing shows, Nova's way.

    Everyone sees their own project's resources; ``?all_tenants=1`` (allowed
    by ``all_tenants_rule``, administrators by default) shows every project's,
    narrowed to one with ``&project_id=``.
    """
    ctxt = req.context
    if not validation.query_bool(req, 'all_tenants'):
        return ctxt.project_id
    policy.authorize(ctxt, all_tenants_rule)
    return req.GET.get('project_id') or None


def pagination(req: Any, sort_keys: tuple[str, ...]) -> dict[str, Any]:
    limit = validation.query_int(req, 'limit', minimum=1)
    return {
        'limit': min(limit or CONF.api.max_limit, CONF.api.max_limit),
        'marker': req.GET.get('marker'),
        'sort_key': validation.query_choice(req, 'sort_key', sort_keys, 'created_at'),
        'sort_dir': validation.query_choice(req, 'sort_dir', ('asc', 'desc'), 'asc'),
    }


def next_links(req: Any, collection: str, items: list[dict[str, Any]], limit: int
               ) -> list[dict[str, str]]:
    """A Cinder-style 'next' link when the page is full."""
    if not items or len(items) < limit:
        return []
    params = dict(req.GET)
    params['marker'] = items[-1]['id']
    params['limit'] = str(limit)
    query = '&'.join('%s=%s' % (k, v) for k, v in sorted(params.items()))
    return [{'rel': 'next', 'href': '%s/v1/%s?%s' % (req.application_url, collection, query)}]


def pick(record: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The ``keys`` of a record, as a view shows them."""
    return {key: record[key] for key in keys}


def for_member(text: str | None, hosts: Iterable[str | None] = ()) -> str | None:
    """A failure's text as a member may read it: no host paths, no host names.

    Drivers' and tools' messages (a failed ``qemu-img``, an OSError) name
    files and hosts of the cloud's plumbing; the reason stays, the places go.
    """
    if not text:
        return text
    text = _HOST_PATH.sub('<path>', text)
    for host in hosts:
        if host:
            text = re.sub(r'\b%s\b' % re.escape(host), '<host>', text)
    return text
