from oslo_policy import policy

from gridcentric_storage.api.policies import base

_PATH = '/v1/volumes'

rules = [
    policy.DocumentedRuleDefault('volume:create', base.ANY_MEMBER, 'Create a volume.',
                                 [{'method': 'POST', 'path': _PATH}]),
    policy.DocumentedRuleDefault('volume:create_on_backend', base.ADMIN,
                                 'Create a volume on a named backend (bypasses placement).',
                                 [{'method': 'POST', 'path': _PATH}]),
    policy.DocumentedRuleDefault('volume:get_all', base.ANY_MEMBER,
                                 "List the project's volumes.",
                                 [{'method': 'GET', 'path': _PATH}]),
    policy.DocumentedRuleDefault('volume:get_all_tenants', base.ADMIN,
                                 "List every project's volumes (?all_tenants=1).",
                                 [{'method': 'GET', 'path': _PATH}]),
    policy.DocumentedRuleDefault('volume:get', base.ADMIN_OR_OWNER, 'Show a volume.',
                                 [{'method': 'GET', 'path': _PATH + '/{volume_id}'}]),
    policy.DocumentedRuleDefault('volume:delete', base.ADMIN_OR_OWNER, 'Delete a volume.',
                                 [{'method': 'DELETE', 'path': _PATH + '/{volume_id}'}]),
]


def list_rules() -> list[policy.DocumentedRuleDefault]:
    return rules
