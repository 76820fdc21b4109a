"""`gc-api qos-*` against the real API: create, list, show, key, associate, delete."""

import json

from tests.fixtures.services import gc_api, wait_for


def _json(cloud, *args):
    result = gc_api(cloud, '--json', *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def test_cli_qos_lifecycle(cloud):
    backend = _json(cloud, 'backend-create', 'fast', '--driver', 'fake')
    volume = _json(cloud, 'volume-create', '--size', '2', '--name', 'db', '--wait')
    gold = _json(cloud, 'qos-create', 'gold', 'total_iops_sec_per_gb=50',
                 'write_bytes_sec=1048576', '--consumer', 'both')
    assert (gold['consumer'], gold['specs']) == (
        'both', {'total_iops_sec_per_gb': 50, 'write_bytes_sec': 1048576})
    assert [s['name'] for s in _json(cloud, 'qos-list')] == ['gold']

    assert gc_api(cloud, 'qos-associate', 'gold', '--volume', 'db').returncode == 0
    limits = wait_for(lambda: _json(cloud, 'volume-show', 'db')['qos'])
    assert limits == {'consumer': 'both',
                      'limits': {'total_iops_sec': 100, 'write_bytes_sec': 1048576}}
    assert _json(cloud, 'qos-key', 'gold', 'set', 'write_bytes_sec=2048')['specs'][
        'write_bytes_sec'] == 2048
    assert gc_api(cloud, 'qos-key', 'gold', 'unset', 'write_bytes_sec').returncode == 0
    assert gc_api(cloud, 'qos-associate', 'gold', '--backend', 'fast').returncode == 0
    shown = _json(cloud, 'qos-show', 'gold')
    assert sorted((a['association_type'], a['id']) for a in shown['associations']) == [
        ('backend', backend['id']), ('volume', volume['id'])]

    both = gc_api(cloud, 'qos-associate', 'gold')
    assert both.returncode == 1 and 'Give --volume or --backend' in both.stderr
    busy = gc_api(cloud, 'qos-delete', 'gold')
    assert busy.returncode == 1 and 'associated with' in busy.stderr
    assert gc_api(cloud, 'qos-disassociate', '--volume', 'db').returncode == 0
    assert gc_api(cloud, 'qos-delete', 'gold', '--force').returncode == 0
    assert _json(cloud, 'qos-list') == []
    assert wait_for(lambda: _json(cloud, 'volume-show', 'db')['qos'] is None)
