"""etc/nova/nova.conf.fragment names every option the virt driver reads, with its default."""

import configparser
import os

from tests.unit.nova.nova_stub import ROOT, nova_python

FRAGMENT = os.path.join(ROOT, 'etc', 'nova', 'nova.conf.fragment')


def test_the_fragment_shows_every_gridcentric_option_at_its_default():
    opts = nova_python('''
from gridcentric_storage.nova.virt import driver
print(json.dumps({o.dest: str(o.default) for group, options in driver.list_opts()
                  for o in options if group.name == 'gridcentric'}))
''')
    # [DEFAULT] is nova.conf's own section here, not defaults for the others
    fragment = configparser.ConfigParser(strict=False, interpolation=None,
                                         default_section='not-a-section')
    fragment.read(FRAGMENT)
    assert dict(fragment['gridcentric']) == opts
