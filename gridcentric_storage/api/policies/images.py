"""Images of the image store: members list and delete their project's own.

Naming a host file as an image, kernel or initrd is not a policy rule: it is
for administrators only (``is_admin``), decided where the file is
(:mod:`gridcentric_storage.image.store`).
"""

from oslo_policy import policy

from gridcentric_storage.api.policies import base

rules = [
    policy.DocumentedRuleDefault(
        'image:get_all', base.ANY_MEMBER,
        "List the images the project may use (its own and the public ones).",
        [{'method': 'GET', 'path': '/v1/images'}]),
    policy.DocumentedRuleDefault(
        'image:delete', base.ANY_MEMBER, "Delete one of the project's own images.",
        [{'method': 'DELETE', 'path': '/v1/images/{name}'}]),
]


def list_rules() -> list[policy.DocumentedRuleDefault]:
    return rules
