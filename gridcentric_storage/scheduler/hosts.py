"""Host placement for servers and clones, beside backend placement (``scheduler``).

Nova's reading of ``availability_zone``: ``az`` or ``az:host`` (the forced
host is an administrator's choice, checked by policy before this). A host
publishes ``{"hypervisor": false, ...}`` in its service capabilities when it
cannot run VMs; a service without capabilities (an older one) can.
"""

from oslo_config import cfg

from gridcentric_storage.common import exception
from gridcentric_storage.db import api as db
from gridcentric_storage.db import models
from gridcentric_storage.db.records import Service

CONF = cfg.CONF


def _load(hosts: set[str] | list[str]) -> dict[str, int]:
    """The servers each of ``hosts`` runs (one GROUP BY, not every row)."""
    counts = db.row_count_by(models.Server, 'host')
    return {host: counts.get(host, 0) for host in hosts}


def _without_hypervisor(services: list[Service]) -> dict[str, str]:
    missing = {}
    for service in services:
        caps = service.get('capabilities') or {}
        if caps.get('hypervisor') is False:
            missing[service['host']] = caps.get('hypervisor_reason') or 'not reported'
    return missing


def known_zones() -> set[str]:
    """Compute hosts are in the default zone; backends may name others."""
    return {CONF.default_availability_zone} | {
        b['availability_zone'] for b in db.backend_get_all()}


def select_host(availability_zone: str | None, required: str | None = None) -> str:
    """The host for new servers: the forced or ``required`` one, else the up host
    with a hypervisor that runs the fewest servers."""
    wanted = None
    zone = (availability_zone or '').split(':', 1)[0]
    if zone:
        zones = known_zones()
        if zone not in zones:
            raise exception.Invalid(reason='unknown availability zone %s; known: %s'
                                    % (zone, ', '.join(sorted(zones))))
    if availability_zone and ':' in availability_zone:
        wanted = availability_zone.split(':', 1)[1] or None
    services = db.service_get_all(CONF.compute.topic, up_only=True)
    up = [s['host'] for s in services]
    missing = _without_hypervisor(services)
    if required is not None:
        if wanted and wanted != required:
            raise exception.Invalid(reason='the live image is on host %s, not %s'
                                    % (required, wanted))
        wanted = required
    if wanted:
        if wanted not in up and wanted == required:
            # The request is fine; the host that holds the live image is down.
            raise exception.Conflict(reason='host %s, which holds the live image, is down'
                                     % wanted)
        if wanted not in up:
            raise exception.Invalid(reason='no compute service is up on host %s' % wanted)
        if wanted in missing:
            raise exception.NoHypervisor(host=wanted, reason=missing[wanted])
        return wanted
    if not up:
        raise exception.NoComputeService(reason='no compute service is up')
    if len(missing) == len(up):
        raise exception.NoHypervisor(host=', '.join(up),
                                     reason='; '.join(sorted(set(missing.values()))))
    load = _load([host for host in up if host not in missing])
    return min(load, key=lambda host: (load[host], host))


def select_clone_host(availability_zone: str | None, live_image_host: str,
                      published: bool) -> str:
    """The host for clones of a live image. Unpublished: the host that holds it.
    Published: that host while it is up with a hypervisor and runs fewer than
    ``[live_image_store] local_slack`` servers more than the least loaded host
    with the store (its files are local: the fast path); else that least loaded
    one (it maps the published RAM lazily). A forced host must have the store."""
    if not published:
        return select_host(availability_zone, required=live_image_host)
    services = db.service_get_all(CONF.compute.topic, up_only=True)
    missing = _without_hypervisor(services)
    able = {s['host'] for s in services if s['host'] not in missing and (
        (s.get('capabilities') or {}).get('live_image_store') or s['host'] == live_image_host)}
    if availability_zone and ':' in availability_zone and availability_zone.split(':', 1)[1]:
        host = select_host(availability_zone)  # zone, up, hypervisor
        if host not in able:
            raise exception.Invalid(reason='host %s has no access to the live image store'
                                    % host)
        return host
    select_host(availability_zone)  # the zone's and the hosts' errors, as for servers
    if not able:
        raise exception.NoComputeService(reason='no host with a hypervisor can reach the '
                                         'live image')
    load = _load(able)
    least = min(load, key=lambda host: (load[host], host))
    if live_image_host in load and (
            load[live_image_host] - load[least] < CONF.live_image_store.local_slack):
        return live_image_host
    return least


def select_migration_host(dest: str | None, source: str, able: set[str] | None) -> str:
    """The host a running server moves to: ``dest`` (an administrator's choice) when
    it is up with a hypervisor, else the least loaded such host other than
    ``source``. ``able``: the hosts that can map a clone's memory (None: any)."""
    if dest:
        host = select_host(':' + dest)      # up, with a hypervisor
        if host == source:
            raise exception.Invalid(reason='the server runs on host %s already' % dest)
        return host
    services = db.service_get_all(CONF.compute.topic, up_only=True)
    missing = _without_hypervisor(services)
    candidates = {s['host'] for s in services if s['host'] not in missing
                  and s['host'] != source and (able is None or s['host'] in able)}
    if not candidates:
        raise exception.NoComputeService(reason='no other host with a hypervisor is up'
                                         + ('' if able is None else ' that can map the '
                                            "server's memory"))
    load = _load(candidates)
    return min(load, key=lambda host: (load[host], host))
