"""doc/architecture.md stays true to the code: its state tables and module names."""

import pathlib
import re

import gridcentric_storage
from gridcentric_storage.common import states as st

TOP = pathlib.Path(gridcentric_storage.__file__).parent.parent
DOC = (TOP / 'doc' / 'architecture.md').read_text()


def _cell(state: str) -> str:
    return '`%s`' % state if state else '(none)'


def render(machine: st.StateMachine) -> str:
    rows = ['| %s | %s |' % ('`%s`' % state if state else '`(none)`',
                             ', '.join(_cell(t) for t in sorted(machine.moves[state])))
            for state in sorted(machine.moves)]
    return '\n'.join(['### %s' % machine.resource, '', '| from | may move to |',
                      '|---|---|'] + rows)


def test_the_state_tables_are_the_code_s():
    for machine in (st.VOLUME, st.SNAPSHOT, st.ATTACHMENT, st.SERVER, st.SERVER_TASK,
                    st.LIVE_IMAGE, st.CACHE_ENTRY):
        assert render(machine) in DOC, machine.resource


def test_every_module_the_doc_names_exists():
    named = set(re.findall(r'`([a-z_/]+\.py)`', DOC))
    assert 'volume/api.py' in named
    missing = [name for name in sorted(named)
               if not any((TOP / base / name).exists()
                          for base in ('', 'gridcentric_storage'))]
    assert missing == []


def test_the_rpc_table_names_each_clients_version():
    for path in sorted((TOP / 'gridcentric_storage').glob('*/rpcapi.py')):
        version = re.search(r"^RPC_API_VERSION = '([0-9.]+)'", path.read_text(), re.M)
        assert version, path
        row = next(line for line in DOC.splitlines()
                   if line.startswith('| `%s/rpcapi.py`' % path.parent.name))
        assert '| %s |' % version[1] in row, (path, row)
