import os
import shutil
import sys

import setuptools
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
# Installed at the top of site-packages (where only .pth files are read) by
# both kinds of install: it makes `nova.virt.gridcentric` an alias of
# gridcentric_storage.nova.virt, the only way Nova 34 loads an outside driver.
PTH = 'gridcentric_storage_nova.pth'


class BuildPy(build_py):
    """`pip install .`: the wheel's purelib root is build_lib."""

    command_name = 'build_py'

    def run(self):
        super().run()
        if not getattr(self, 'editable_mode', False):
            self.copy_file(os.path.join(HERE, PTH), os.path.join(self.build_lib, PTH))


class EditableWheel(editable_wheel):
    """`pip install -e .`: the editable wheel's root is the unpacked wheel
    directory (build_lib is thrown away), so the .pth is copied there."""

    command_name = 'editable_wheel'

    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
        outputs = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        shutil.copyfile(os.path.join(HERE, PTH), os.path.join(unpacked_wheel, PTH))
        return outputs


if __name__ == '__main__':
    # pbr replaces setup()'s cmdclass with setup.cfg's [global] commands, which
    # it imports by name: this file, as the module `setup` (without this block)
    sys.path.insert(0, HERE)
    setuptools.setup(setup_requires=['pbr>=2.0.0'], pbr=True)
