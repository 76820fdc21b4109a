"""LiveImageHostFilter inside Nova's scheduler code (under Nova's own venv).

The filter subclasses Nova's ``BaseHostFilter``, so it is run by Nova's own
Python; the test is skipped where there is no Nova venv (tools/nova.sh
builds it at /opt/gc-nova-venv).
"""

from tests.unit.nova.nova_stub import nova_python

CODE = '''
from nova.scheduler import filters, host_manager
CLASS = 'gridcentric_storage.nova.scheduler_filter.LiveImageHostFilter'
# How nova-scheduler loads it from [filter_scheduler] available_filters.
[cls] = filters.HostFilterHandler().get_matching_classes([CLASS])
hosts = [host_manager.HostState(name, name, 'cell1') for name in ('h1', 'h2', 'h3')]

def passing(hints, count=1):
    spec = objects.RequestSpec(scheduler_hints=hints, num_instances=count,
                               instance_uuid='3f2a8e8e-0d7b-4b8e-9a40-6d6b3f0f6a11')
    return [h.host for h in filters.HostFilterHandler().get_filtered_objects(
        [cls()], hosts, spec)]

print(json.dumps({
    'name': cls.__name__,
    'pinned': passing({'gc_live_image_hosts': ['h2']}),
    'pinned_many': passing({'gc_live_image_hosts': ['h2']}, count=3),
    'two': passing({'gc_live_image_hosts': ['h3', 'h1']}),
    'gone': passing({'gc_live_image_hosts': ['elsewhere']}),
    'other_hints': passing({'group': ['g1']}),
    'none': passing({}),
}))
'''


def test_only_the_live_images_host_passes():
    result = nova_python(CODE)
    assert result['name'] == 'LiveImageHostFilter'  # the name enabled_filters uses
    assert result['pinned'] == result['pinned_many'] == ['h2']
    assert result['two'] == ['h1', 'h3']
    assert result['gone'] == []  # its host is gone: no host, NoValidHost
    # Every other request is left alone.
    assert result['other_hints'] == result['none'] == ['h1', 'h2', 'h3']
