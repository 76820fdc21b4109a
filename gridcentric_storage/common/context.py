"""Request context: who is calling, for which project, with which roles."""

from typing import Any

from oslo_context import context as oslo_context


class RequestContext(oslo_context.RequestContext):
    """oslo.context's context plus helpers used by the DB layer and policy."""

    def to_policy_values(self) -> Any:
        # oslo.context stopped putting is_admin into the policy values, which
        # silently turned every ``is_admin:True`` check into a denial.
        values = super().to_policy_values()
        values['project_id'] = self.project_id
        values['is_admin'] = self.is_admin
        return values

    def elevated(self) -> 'RequestContext':
        ctx = RequestContext.from_dict(self.to_dict())
        ctx.is_admin = True
        if 'admin' not in ctx.roles:
            ctx.roles = list(ctx.roles) + ['admin']
        return ctx


def get_admin_context() -> RequestContext:
    return RequestContext(user_id=None, project_id=None, is_admin=True, roles=['admin'],
                          overwrite=False)
