"""``nova.virt.gridcentric`` is gridcentric_storage.nova.virt, installed by the package's .pth.

Each check runs in a fresh interpreter: the alias is process-wide state, and
what a .pth imports must be seen from interpreter start-up.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PTH = REPO / 'gridcentric_storage_nova.pth'


def _python(code: str, path: list[Path], no_site: bool = False) -> dict:
    """Run ``code`` with ``path`` ahead of the repository; the JSON it prints."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in [*path, REPO]))
    out = subprocess.run([sys.executable, *(['-S'] if no_site else []), '-c', code], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


@pytest.fixture
def stub_nova(tmp_path: Path) -> Path:
    """A ``nova.virt`` package that is not Nova (the alias needs only the name)."""
    for package in ('nova', 'nova/virt'):
        (tmp_path / package).mkdir()
        (tmp_path / package / '__init__.py').write_text('')
    return tmp_path


def test_pth_makes_nova_virt_gridcentric_the_same_module(stub_nova: Path, tmp_path: Path) -> None:
    site_dir = tmp_path / 'site-packages'
    site_dir.mkdir()
    (site_dir / PTH.name).write_text(PTH.read_text())
    result = _python('''
import importlib, json, site, sys
site.addsitedir(%r)                       # what the interpreter does with site-packages
real = importlib.import_module('gridcentric_storage.nova.virt.clone_xml')
# the submodule first, then the package, by the alias name
alias_sub = importlib.import_module('nova.virt.gridcentric.clone_xml')
alias = importlib.import_module('nova.virt.gridcentric')
import gridcentric_storage.nova.virt as pkg
import nova.virt
print(json.dumps({
    'package': alias is pkg, 'submodule': alias_sub is real,
    'attribute': nova.virt.gridcentric is pkg,
    'spec': [alias.__spec__.name, alias_sub.__spec__.name],
    'one_copy': sorted(n for n, m in sys.modules.items() if m is real),
}))
''' % str(site_dir), [stub_nova])
    assert result == {
        'package': True, 'submodule': True, 'attribute': True,
        # the real modules keep their own spec (reload, pickling by name)
        'spec': ['gridcentric_storage.nova.virt', 'gridcentric_storage.nova.virt.clone_xml'],
        # the path finder did not load nova/virt/gridcentric/clone_xml.py again
        'one_copy': ['gridcentric_storage.nova.virt.clone_xml',
                     'nova.virt.gridcentric.clone_xml'],
    }


def test_other_names_are_not_aliased(stub_nova: Path) -> None:
    result = _python('''
import importlib, json
import gridcentric_storage.nova.virt_alias
out = {}
for name in ('nova.virt.gridcentricx', 'nova.virt.other', 'gridcentric'):
    try:
        importlib.import_module(name)
        out[name] = 'imported'
    except ModuleNotFoundError:
        out[name] = 'not found'
print(json.dumps(out))
''', [stub_nova])
    assert result == {'nova.virt.gridcentricx': 'not found', 'nova.virt.other': 'not found',
                      'gridcentric': 'not found'}


def test_alias_module_imports_only_the_standard_library() -> None:
    # -S: nothing from site-packages (nor an installed .pth) ran before the import
    result = _python('''
import json, sys
before = set(sys.modules)
import gridcentric_storage.nova.virt_alias
new = sorted(set(sys.modules) - before)
print(json.dumps({'outside_stdlib': [n for n in new
                                     if n.split('.')[0] not in sys.stdlib_module_names],
                  'finders': [type(f).__name__ for f in sys.meta_path][:1]}))
''', [], no_site=True)
    assert result == {
        'outside_stdlib': ['gridcentric_storage', 'gridcentric_storage.nova',
                           'gridcentric_storage.nova.virt_alias'],
        'finders': ['AliasFinder'],
    }

