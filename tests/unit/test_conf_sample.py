"""The shipped config sample is what oslo-config-generator makes from the code."""

import os
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(TOP, 'etc', 'gridcentric-storage', 'gridcentric-storage.conf.sample')


def test_sample_is_current(tmp_path):
    generated = tmp_path / 'sample.conf'
    subprocess.run([sys.executable, '-m', 'oslo_config.generator', '--config-file',
                    os.path.join(TOP, 'etc', 'gridcentric-storage', 'config-generator.conf'),
                    '--output-file', str(generated)], check=True, cwd=TOP,
                   capture_output=True)
    with open(SAMPLE) as shipped:
        assert shipped.read() == generated.read_text(), (
            'etc/gridcentric-storage/gridcentric-storage.conf.sample is stale: run '
            'tools/generate-config-sample.sh')
