from oslo_policy import policy

from gridcentric_storage.api.policies import base

_PATH = '/v1/backends'


def _rule(name: str, description: str, method: str, path: str) -> policy.DocumentedRuleDefault:
    return policy.DocumentedRuleDefault(
        name='backend:%s' % name, check_str=base.ADMIN, description=description,
        operations=[{'method': method, 'path': path}])


rules = [
    _rule('create', 'Register a storage backend.', 'POST', _PATH),
    _rule('get_all', 'List storage backends.', 'GET', _PATH),
    _rule('get', 'Show a storage backend.', 'GET', _PATH + '/{backend_id}'),
    _rule('update', 'Change a storage backend.', 'PUT', _PATH + '/{backend_id}'),
    _rule('delete', 'Remove an empty storage backend.', 'DELETE', _PATH + '/{backend_id}'),
    _rule('action', 'Enable or disable a storage backend.', 'POST',
          _PATH + '/{backend_id}/action'),
]


def list_rules() -> list[policy.DocumentedRuleDefault]:
    return rules
