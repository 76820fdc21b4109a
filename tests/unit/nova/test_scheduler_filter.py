"""LiveImageHostFilter inside Nova's scheduler code (under Nova's own venv).

The filter subclasses Nova's ``BaseHostFilter``, so it is run by Nova's own
Python; the test is skipped where there is no Nova venv (tools/nova.sh
builds it at /opt/gc-nova-venv).
"""

from tests.unit.nova.nova_stub import nova_python

CODE = '''
import nova.conf
from nova.scheduler import filters, host_manager
from gridcentric_storage.nova.hint import seal
CLASS = 'gridcentric_storage.nova.scheduler_filter.LiveImageHostFilter'
# How nova-scheduler loads it from [filter_scheduler] available_filters.
[cls] = filters.HostFilterHandler().get_matching_classes([CLASS])
hosts = [host_manager.HostState(name, name, 'cell1') for name in ('h1', 'h2', 'h3')]
SECRET, PROJECT = 'shared secret', 'p1'

def passing(hints, count=1, project=PROJECT):
    spec = objects.RequestSpec(scheduler_hints=hints, num_instances=count,
                               project_id=project,
                               instance_uuid='3f2a8e8e-0d7b-4b8e-9a40-6d6b3f0f6a11')
    return [h.host for h in filters.HostFilterHandler().get_filtered_objects(
        [cls()], hosts, spec)]

def sealed(*names, secret=SECRET, project=PROJECT):
    return {'gc_live_image_hosts': [seal(secret, project, list(names))]}

nova.conf.CONF.set_override('scheduler_hint_key', SECRET, group='gridcentric')
result = {
    'name': cls.__name__,
    'pinned': passing(sealed('h2')),
    'pinned_many': passing(sealed('h2'), count=3),
    'two': passing(sealed('h3', 'h1')),
    'gone': passing(sealed('elsewhere')),
    'other_hints': passing({'group': ['g1']}),
    'none': passing({}),
    # what a member could write or copy: host names, another key's or project's token
    'plain': passing({'gc_live_image_hosts': ['h2']}),
    'forged': passing(sealed('h2', secret='guessed')),
    'other_project': passing(sealed('h2'), project='p2'),
}
nova.conf.CONF.clear_override('scheduler_hint_key', group='gridcentric')
result['no_key'] = passing(sealed('h2'))
print(json.dumps(result))
'''


def test_only_the_live_images_host_passes():
    result = nova_python(CODE)
    assert result['name'] == 'LiveImageHostFilter'  # the name enabled_filters uses
    assert result['pinned'] == result['pinned_many'] == ['h2']
    assert result['two'] == ['h1', 'h3']
    assert result['gone'] == []  # its host is gone: no host, NoValidHost
    # Every other request is left alone.
    assert result['other_hints'] == result['none'] == ['h1', 'h2', 'h3']


def test_a_hint_not_sealed_by_gridcentric_api_passes_no_host():
    """A member may send any hint and read it back: names in it, or a token sealed
    under another secret or for another project, place nothing (the same
    NoValidHost whatever the names), so host names cannot be probed."""
    result = nova_python(CODE)
    assert result['plain'] == result['forged'] == result['other_project'] == []
    assert result['no_key'] == []       # nova.conf without the secret: fail closed


def test_the_token_shows_no_host_name():
    from gridcentric_storage.nova import hint

    token = hint.seal('shared secret', 'p1', ['compute-7.example.org'])
    assert 'compute-7' not in token and 'example' not in token
    assert hint.unseal('shared secret', token, 'p1') == [
        'compute-7.example.org']
    assert hint.unseal('shared secret', token, 'p2') == []
    assert hint.unseal(None, token, 'p1') == []
