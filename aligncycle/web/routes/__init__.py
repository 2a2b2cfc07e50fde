"""The web app's pages, one router module per resource, assembled into one router."""

from fastapi import APIRouter

from aligncycle.web.routes import (
    account,
    actions,
    admin,
    admin_channels,
    admin_playbooks,
    auth,
    cycles,
    gaps,
    imports,
    my_work,
    numbers,
    password_links,
    recap,
    sso,
    timeline,
)

router = APIRouter(include_in_schema=False)
for module in (auth, cycles, gaps, actions, timeline, recap, my_work, imports, numbers, account):
    router.include_router(module.router)
for module in (admin, admin_channels, admin_playbooks, password_links, sso):
    router.include_router(module.router)
