"""What the client needs beyond python-novaclient: the manager base (pagination,
waiting, raw byte streams), ``--wait`` handling, argument types, table cells and
progress lines.

novaclient does the rest: ``novaclient.utils.arg`` declares the commands' arguments,
``novaclient.utils.find_resource`` (on :class:`GCManager`'s ``ManagerWithFind``
``find``/``findall``) resolves names and IDs, and :func:`print_list` /
:func:`print_dict` hand novaclient's table printers the cell text. Nothing here talks
to a particular resource. The manager base is deliberately kept out of the extension
modules' namespace (they import this *module*), because
``novaclient.extension.Extension`` picks the ``base.Manager`` subclass it finds in an
extension module's globals.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

from keystoneauth1 import adapter
from novaclient import base, exceptions
from novaclient import utils as nova_utils
from oslo_utils import uuidutils

__all__ = [
    'ClientError', 'ResourceInErrorState', 'WaitTimeout', 'ERRORS', 'GCManager',
    'key_values', 'print_list', 'print_dict', 'print_json', 'Progress',
    'TransferProgress', 'positive_int', 'non_negative_int', 'non_negative_float',
    'seconds', 'wait_args', 'wait_for', 'backend_id', 'label', 'for_each',
]

POLL_INTERVAL = 1.0     # seconds between polls of ``wait`` / ``--wait``
DEFAULT_TIMEOUT = 600.0


class ClientError(Exception):
    """Base of the errors the client raises itself (API errors are novaclient's, and
    so is ``novaclient.exceptions.CommandError`` for bad input and unknown names)."""


class ResourceInErrorState(ClientError):
    """Waited-for work ended in ``error``; ``resource.status_reason`` says why."""

    def __init__(self, resource: Any, message: str) -> None:
        super().__init__(message)
        self.resource = resource


class WaitTimeout(ClientError):
    """Waited-for work did not finish in time."""


# What a command reports as a failure of one item (any other error is a bug).
ERRORS = (exceptions.ClientException, exceptions.CommandError, ClientError)


def _query(params: Mapping[str, Any]) -> str:
    """Query string without ``None`` values; lists become repeated keys (which
    ``novaclient.utils.prepare_query_string`` would send as one quoted list)."""
    clean = {k: v for k, v in params.items() if v is not None and v != []}
    if not clean:
        return ''
    return '?' + urllib.parse.urlencode(sorted(clean.items()), doseq=True)


def _next_marker(body: Mapping[str, Any], response_key: str) -> str | None:
    for link in body.get(f'{response_key}_links') or []:
        if link.get('rel') == 'next':
            query = urllib.parse.urlsplit(link.get('href', '')).query
            markers = urllib.parse.parse_qs(query).get('marker')
            return markers[-1] if markers else None
    return None


class GCManager(base.ManagerWithFind):
    """``novaclient.base.ManagerWithFind`` for our API: absolute ``/v1/...`` paths
    from the API root, Cinder-style ``<key>_links`` pagination, waiting for a status,
    and no completion cache (novaclient's writes files under ``~/.novaclient`` on every
    list). ``find(name=...)`` is novaclient's; resolve an ID or name with
    ``novaclient.utils.find_resource(manager, name_or_id)``."""

    collection_key = ''   # e.g. 'backends'
    resource_key = ''     # e.g. 'backend'
    base_url = ''         # e.g. '/v1/backends'
    # States a resource passes through on its own; ``wait`` ends when it leaves them.
    transitional: frozenset[str] = frozenset()

    @contextlib.contextmanager
    def completion_cache(self, cache_type: str, obj_class: Any,
                         mode: str) -> Iterator[None]:
        yield

    def _url(self, resource: Any = None, suffix: str = '') -> str:
        url = self.base_url
        if resource is not None:
            url += '/' + urllib.parse.quote(str(base.getid(resource)), safe='')
        return url + suffix

    def _make(self, info: dict[str, Any], resp: Any = None) -> Any:
        return self.resource_class(self, info, loaded=True, resp=resp)

    def _list_paged(self, params: Mapping[str, Any], limit: int | None = None,
                    marker: str | None = None) -> base.ListWithMeta:
        """GET the collection, following ``next`` links until ``limit`` items
        (all of them when ``limit`` is None) have been collected."""
        items: list[Any] = []
        responses = []
        while True:
            page_params = dict(params, marker=marker)
            if limit is not None:
                page_params['limit'] = limit - len(items)
            resp, body = self.api.client.get(self.base_url + _query(page_params))
            responses.append(resp)
            items.extend(self._make(info) for info in body[self.collection_key] if info)
            marker = _next_marker(body, self.collection_key)
            if not marker or (limit is not None and len(items) >= limit):
                break
        return base.ListWithMeta(items if limit is None else items[:limit], responses)

    def _get_one(self, resource: Any) -> Any:
        resp, body = self.api.client.get(self._url(resource))
        return self._make(body[self.resource_key], resp)

    def _post(self, url: str, body: dict[str, Any]) -> Any:
        resp, body = self.api.client.post(url, body=body)
        return self._make(body[self.resource_key], resp)

    def _put(self, url: str, body: dict[str, Any]) -> Any:
        resp, body = self.api.client.put(url, body=body)
        return self._make(body[self.resource_key], resp)

    def _raw(self, method: str, url: str, **kwargs: Any) -> Any:
        """A request with byte bodies; returns the ``requests.Response``. novaclient's
        client (a keystoneauth ``LegacyJsonAdapter``) would JSON-encode the body and
        read the whole answer to parse it; the plain ``Adapter.request`` does not."""
        resp = adapter.Adapter.request(self.api.client, url, method, raise_exc=False,
                                       **kwargs)
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = None
            finally:
                resp.close()
            raise exceptions.from_response(resp, body, url, method)
        return resp

    def wait(self, resource: Any, deleted: bool = False, timeout: float | None = None,
             poll_interval: float | None = None,
             progress: Callable[[Any, float], None] | None = None) -> Any:
        """Poll until ``resource`` leaves :attr:`transitional`; return it settled, or
        None once it is gone (404) when ``deleted``. Raises :class:`ResourceInErrorState`
        for an ``error*`` state, :class:`WaitTimeout` after ``timeout`` seconds.
        ``progress(resource, elapsed)`` is called after every poll.

        Shaped like novaclient's ``_poll_for_status`` (private to its shell, without a
        timeout, printing to stdout); no library has a public equivalent."""
        interval = POLL_INTERVAL if poll_interval is None else poll_interval
        kind = self.resource_class.__name__
        started = time.monotonic()
        while True:
            try:
                current = self.get(resource)
            except exceptions.NotFound:
                if deleted:
                    return None
                raise
            elapsed = time.monotonic() - started
            status = str(getattr(current, 'status', ''))
            if progress is not None:
                progress(current, elapsed)
            if status.startswith('error'):
                reason = current.to_dict().get('status_reason') or 'no reason given'
                raise ResourceInErrorState(
                    current, f'{kind} {label(current)} went to status {status}: {reason}')
            if not deleted and status not in self.transitional:
                return current
            if timeout is not None and elapsed >= timeout:
                raise WaitTimeout(f'Timed out after {elapsed:.0f}s waiting for {kind.lower()} '
                                  f'{label(current)} (status: {status})')
            time.sleep(interval)

    def get(self, resource: Any) -> Any:
        return self._get_one(resource)


def label(resource: Any) -> str:
    """``name (id)``, or the ID alone for unnamed resources."""
    info = resource.to_dict() if hasattr(resource, 'to_dict') else {}
    name, rid = info.get('name'), info.get('id', base.getid(resource))
    return f'{name} ({rid})' if name else str(rid)


def backend_id(gc: Any, name_or_id: str | None) -> str | None:
    """An ID is passed through untouched (no admin-only lookup); a name is resolved."""
    if name_or_id is None or uuidutils.is_uuid_like(name_or_id):
        return name_or_id
    return nova_utils.find_resource(gc.gc_backends, name_or_id).id


def _at_least(kind: Callable[[str], Any], minimum: int, what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'invalid {what}: {text!r}') from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f'must be at least {minimum}: {text!r}')
        return value
    return parse


# ``argparse`` types
positive_int = _at_least(int, 1, 'integer')
non_negative_int = _at_least(int, 0, 'integer')
non_negative_float = _at_least(float, 0, 'number')
seconds = _at_least(float, 0, 'number of seconds')


def key_values(texts: Iterable[str] | None, option: str,
               parse_json: bool = False) -> list[tuple[str, Any]]:
    """The ``(key, value)`` pairs of a repeatable ``KEY=VALUE`` option. Checked when
    the command runs, not by ``argparse``, so a bad one is a one-line error. With
    ``parse_json`` a value that is JSON (numbers, true/false, lists, objects, quoted
    strings) is parsed."""
    pairs = []
    for text in texts or []:
        key, sep, value = text.partition('=')
        if not sep or not key.strip():
            raise exceptions.CommandError(f"{option} '{text}' is not of the form KEY=VALUE.")
        parsed: Any = value
        if parse_json:
            with contextlib.suppress(ValueError):
                parsed = json.loads(value)
        pairs.append((key.strip(), parsed))
    return pairs


def for_each(items: Iterable[str], action: Callable[[str], Any], failed: str,
             then: Callable[[Any], Any] | None = None) -> None:
    """Run ``action`` on every item, then ``then`` on what each successful one
    returned, then report every failure in one line starting with ``failed``
    ("Unable to delete backend(s)"): one bad name never stops the rest."""
    failures, done = [], []
    for item in items:
        try:
            done.append((item, action(item)))
        except ERRORS as exc:
            failures.append(f'{item}: {exc}')
    for item, result in done:
        try:
            if then is not None:
                then(result)
        except ERRORS as exc:
            failures.append(f'{item}: {exc}')
    if failures:
        raise exceptions.CommandError('{}: {}'.format(failed, '; '.join(failures)))


def wait_args(func: Any) -> Any:
    """Decorator: ``--wait`` and ``--timeout`` for a command that starts work."""
    func = nova_utils.arg(
        '--timeout', type=seconds, default=DEFAULT_TIMEOUT, metavar='SECONDS',
        help=f'With --wait: give up after this long (default {DEFAULT_TIMEOUT:.0f}, '
             '0 = never).')(func)
    return nova_utils.arg('--wait', action='store_true',
                          help='Wait until done; a progress line is drawn on a tty.')(func)


def wait_for(manager: Any, resource: Any, timeout: float, action: str = 'creating',
             deleted: bool = False) -> Any:
    """``manager.wait`` for a command, with a spinner on a tty (``timeout`` 0 = never)."""
    kind = manager.resource_class.__name__.lower()
    progress = Progress(f'{action} {kind} {label(resource)}')
    try:
        return manager.wait(resource, deleted=deleted, timeout=timeout or None,
                            progress=lambda current, _elapsed: progress.update(current.status))
    finally:
        progress.done()


def _cell(value: Any) -> str:
    """Table text of a value: lists of names comma-separated, blanks empty."""
    if value is None:
        return ''
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return ', '.join(value)
        return json.dumps(value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _to_dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, 'to_dict') else dict(obj)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + '\n')


def print_list(rows: Sequence[Any], columns: Sequence[tuple[str, Any]],
               as_json: bool = False) -> None:
    """``novaclient.utils.print_list`` of ``rows``, or JSON; ``columns`` are
    ``(label, key-or-callable)`` pairs, the callable taking the row as a dict."""
    if as_json:
        print_json([_to_dict(r) for r in rows])
        return

    def formatter(get: Any) -> Callable[[Any], str]:
        def cell(row: Any) -> str:
            info = _to_dict(row)
            return _cell(get(info) if callable(get) else info.get(get))
        return cell

    nova_utils.print_list(rows, [name for name, _ in columns],
                          {name: formatter(get) for name, get in columns})


def print_dict(obj: Any, as_json: bool = False) -> None:
    """``novaclient.utils.print_dict`` of a resource or dict, or JSON."""
    info = _to_dict(obj)
    if as_json:
        print_json(info)
    else:
        nova_utils.print_dict({key: _cell(value) for key, value in info.items()})


class Progress:
    """A spinner with elapsed seconds on ``stream``, drawn only when it is a tty."""

    FRAMES = '|/-\\'

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, 'isatty', lambda: False)())
        self.started = time.monotonic()
        self._frame = 0

    def update(self, status: str) -> None:
        if not self.enabled:
            return
        elapsed = int(time.monotonic() - self.started)
        frame = self.FRAMES[self._frame % len(self.FRAMES)]
        self._frame += 1
        self.stream.write(f'\r\033[K{frame} {self.label}: {status} ({elapsed}s)')
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write('\r\033[K')
            self.stream.flush()


def _size(n: float) -> str:
    units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
    while n >= 1024 and len(units) > 1:
        n, units = n / 1024, units[1:]
    return f'{n:.0f} B' if units[0] == 'B' else f'{n:.1f} {units[0]}'


class TransferProgress(Progress):
    """A byte counter (bar and percent when the total is known, MB/s) on ``stream``,
    drawn only when it is a tty and at most every ``interval`` seconds."""

    WIDTH = 24

    def __init__(self, label: str, total: int | None = None, stream: IO[str] | None = None,
                 interval: float = 0.1) -> None:
        super().__init__(label, stream)
        self.total, self.interval, self.count, self._drawn = total, interval, 0, 0.0

    def __call__(self, count: int) -> None:
        """Record that ``count`` bytes (in all) have been moved."""
        self.count = count
        now = time.monotonic()
        if self.enabled and now - self._drawn >= self.interval:
            self._drawn = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-6)
        rate = f'{self.count / elapsed / 1e6:.1f} MB/s'
        if not self.total:
            return f'{self.label}: {_size(self.count)}  {rate}'
        fraction = min(self.count / self.total, 1.0)
        filled = int(fraction * self.WIDTH)
        bar = '#' * filled + '-' * (self.WIDTH - filled)
        return (f'{self.label}: [{bar}] {fraction:4.0%}  {_size(self.count)} / '
                f'{_size(self.total)}  {rate}')

    def _draw(self, now: float) -> None:
        self.stream.write('\r\033[K' + self.line(now))
        self.stream.flush()

    def done(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write('\n')
            self.stream.flush()


class ProgressReader:
    """A request body: exactly ``length`` bytes of ``source``, reporting the count. It
    has a length and no ``__iter__``: ``requests`` sends it with a Content-Length."""

    def __init__(self, source: IO[bytes], length: int,
                 progress: Callable[[int], None] | None = None) -> None:
        self.source, self.length, self.progress = source, length, progress
        self.count = 0

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        left = self.length - self.count
        size = left if size is None or size < 0 else min(size, left)
        data = self.source.read(size) if size else b''
        if size and not data:
            raise ClientError(f'The input ended after {self.count} of {self.length} bytes.')
        self.count += len(data)
        if self.progress is not None:
            self.progress(self.count)
        return data
