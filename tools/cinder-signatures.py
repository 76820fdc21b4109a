#!/usr/bin/env python3
"""Print the volume driver contract of the installed Cinder as JSON.

Run with a Python that has Cinder installed (tools/run-tests.sh uses .venv,
where test-requirements.txt puts cinder==29.0.0); tests/interface compares our drivers
against this output. Only method names and inspect.signature strings are
read, so nothing of Cinder is copied into the project.
"""

import inspect
import json
import sys


def parameters(function: object) -> list[list[str]]:
    """[name, kind, default] per parameter: what a caller depends on, not annotations."""
    return [[p.name, p.kind.name,
             'required' if p.default is inspect.Parameter.empty else repr(p.default)]
            for p in inspect.signature(function).parameters.values()]  # type: ignore[arg-type]


def main() -> int:
    from cinder.interface import volume_driver, volume_snapshot_revert
    from cinder.volume import driver

    def methods(cls: type) -> dict[str, list[list[str]]]:
        result = {}
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            if not name.startswith('_'):
                result[name] = parameters(member)
        return result

    import cinder
    json.dump({'cinder_version': getattr(cinder, '__version__', None) or
               __import__('importlib.metadata').metadata.version('cinder'),
               'VolumeDriverCore': methods(volume_driver.VolumeDriverCore),
               'VolumeSnapshotRevertDriver':
                   methods(volume_snapshot_revert.VolumeSnapshotRevertDriver),
               'BaseVD': methods(driver.BaseVD)}, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
