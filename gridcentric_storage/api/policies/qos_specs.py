"""QoS specs are the cloud's plumbing, like backends: administrators only.

Members see only the limits that govern their own volume (its ``qos`` field);
associating specs with a volume is an administrator's volume action.
"""

from oslo_policy import policy

from gridcentric_storage.api.policies import base

_PATH = '/v1/qos-specs'


def _rule(name: str, description: str, method: str, path: str) -> policy.DocumentedRuleDefault:
    return policy.DocumentedRuleDefault(
        name='qos:%s' % name, check_str=base.ADMIN, description=description,
        operations=[{'method': method, 'path': path}])


rules = [
    _rule('create', 'Create QoS specs.', 'POST', _PATH),
    _rule('get_all', 'List QoS specs.', 'GET', _PATH),
    _rule('get', 'Show QoS specs and what they are associated with.', 'GET',
          _PATH + '/{qos_specs_id}'),
    _rule('update', 'Set or remove keys of QoS specs.', 'PUT', _PATH + '/{qos_specs_id}'),
    _rule('delete', 'Delete QoS specs (?force=true: even while associated).', 'DELETE',
          _PATH + '/{qos_specs_id}'),
    _rule('associate', 'Associate QoS specs with a volume (the volume action "qos"); '
          'with a backend through the backend\'s qos_specs_id.', 'POST',
          '/v1/volumes/{volume_id}/action'),
]


def list_rules() -> list[policy.DocumentedRuleDefault]:
    return rules
