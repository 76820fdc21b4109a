"""Policy defaults in code (oslo.policy); a policy file only overrides them.

Backends are the cloud's plumbing: admin only. Everything else belongs to a
project: its members may use it, admins may see every project's.
"""

import itertools

from oslo_policy import policy

from gridcentric_storage.api.policies import backends, base, images, qos_specs, servers, volumes


def list_rules() -> list[policy.RuleDefault]:
    return list(itertools.chain(base.list_rules(), backends.list_rules(),
                                volumes.list_rules(), servers.list_rules(),
                                images.list_rules(), qos_specs.list_rules()))
