"""Fixtures: the in-memory API stand-in, a Python client on it, and a ``gc-api`` runner."""

from __future__ import annotations

import os

import pytest
from keystoneauth1 import noauth, session

from gridcentric_storage import client
from gridcentric_storage.client import shell, utils

from .fake_api import FakeAPI
from .helpers import Result


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No OS_* settings of whoever runs the tests; fast --wait polling."""
    for name in list(os.environ):
        if name.startswith(('OS_', 'NOVACLIENT_')):
            monkeypatch.delenv(name)
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.setattr(utils, 'POLL_INTERVAL', 0.01)


@pytest.fixture
def api():
    with FakeAPI() as server:
        yield server


@pytest.fixture
def gc(api):
    return client.get_client(session.Session(auth=noauth.NoAuth(endpoint=api.url)))


@pytest.fixture
def run(api, capsys):
    """``run(*argv)`` -> Result: ``gc-api`` against the stand-in, without keystone."""
    def _run(*argv: str, endpoint: str | None = None) -> Result:
        capsys.readouterr()
        rc = shell.main(['--os-auth-type', 'none', '--os-endpoint', endpoint or api.url,
                         *argv])
        out, err = capsys.readouterr()
        return Result(rc, out, err)
    return _run
