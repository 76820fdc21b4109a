from oslo_policy import policy

ADMIN = 'rule:admin_api'
ADMIN_OR_OWNER = 'rule:admin_or_owner'
ANY_MEMBER = 'rule:project_member'

rules = [
    policy.RuleDefault('context_is_admin', 'role:admin',
                       description='Decides who counts as an administrator.'),
    policy.RuleDefault('admin_api', 'is_admin:True or role:admin',
                       description='Cloud administrators.'),
    policy.RuleDefault('admin_or_owner', 'rule:admin_api or project_id:%(project_id)s',
                       description='Administrators or members of the owning project.'),
    policy.RuleDefault('project_member', 'is_admin:True or role:member or role:_member_',
                       description='Anyone with a role in a project.'),
]


def list_rules() -> list[policy.RuleDefault]:
    return rules
