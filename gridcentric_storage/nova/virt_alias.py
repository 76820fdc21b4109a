"""Make ``nova.virt.gridcentric`` the same module as ``gridcentric_storage.nova.virt``.

Nova 34 loads its virt driver as ``'nova.virt.' + [DEFAULT] compute_driver``
and nothing else, so a driver living outside Nova's tree needs a name under
``nova.virt``. The package's ``gridcentric_storage_nova.pth`` imports this
module at interpreter start-up, so it registers one finder and imports nothing
but the standard library: every Python process of the environment pays for
it. The alias is the real module object (not a copy), so ``isinstance``
checks and module state are shared whichever name imported it first.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence

__all__ = ['ALIAS', 'TARGET', 'AliasFinder', 'install']

ALIAS = 'nova.virt.gridcentric'
TARGET = 'gridcentric_storage.nova.virt'


class AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``nova.virt.gridcentric[.x]`` and loads it as ``gridcentric_storage.nova.virt[.x]``."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != ALIAS and not fullname.startswith(ALIAS + '.'):
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(TARGET + spec.name[len(ALIAS):])
        # The import system overwrites __spec__ of what we return with the
        # alias's spec; exec_module puts the real one back.
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        alias_spec = module.__spec__
        if alias_spec is not None and alias_spec.loader is self:
            module.__spec__ = alias_spec.loader_state


def install() -> AliasFinder:
    """Register the finder once, ahead of the path finder (which would otherwise
    load ``nova/virt/gridcentric/x.py`` a second time as a different module)."""
    for finder in sys.meta_path:
        if isinstance(finder, AliasFinder):
            return finder
    finder = AliasFinder()
    sys.meta_path.insert(0, finder)
    return finder


install()
