"""The sealed scheduler hint that places a live image's clones (both ends).

gridcentric-api seals the hosts a live image's clones may run on (:func:`seal`)
and nova-scheduler's ``LiveImageHostFilter`` opens them (:func:`unseal`);
``nova.scheduler_filter`` says why the hint is sealed. This module is the
library's, not the Nova plugin's: gridcentric-api imports it without Nova.
"""

import base64
import hashlib
import json
from typing import Any

__all__ = ['seal', 'unseal']


def _fernet(secret: str) -> Any:
    # imported here: the package imports without it (oslo's and Nova's dependency)
    from cryptography import fernet

    # any passphrase will do as the secret: Fernet's key is derived from it
    return fernet.Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


def seal(secret: str, project_id: str, hosts: list[str]) -> str:
    """The hint's value for clones of ``project_id`` allowed on ``hosts``
    (gridcentric-api's side; the module doc says why)."""
    payload = json.dumps({'project_id': project_id, 'hosts': list(hosts)})
    return _fernet(secret).encrypt(payload.encode()).decode()


def unseal(secret: str | None, token: str, project_id: str | None) -> list[str]:
    """The hosts ``token`` allows a request of ``project_id``; none when it was
    not sealed under ``secret`` or for that project."""
    if not secret:
        return []
    from cryptography.fernet import InvalidToken

    try:
        payload = json.loads(_fernet(secret).decrypt(token.encode()))
    except (InvalidToken, ValueError, TypeError):
        return []
    if not isinstance(payload, dict) or payload.get('project_id') != project_id:
        return []
    return [str(h) for h in payload.get('hosts') or []]
