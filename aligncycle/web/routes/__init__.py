"""The web app's pages, one router module per resource, assembled into one router."""

from fastapi import APIRouter

from aligncycle.web.routes import (
    account,
    actions,
    admin,
    admin_channels,
    admin_playbooks,
    agreements,
    alignment,
    auth,
    breaches,
    cycles,
    gaps,
    imports,
    my_work,
    notifications,
    numbers,
    password_links,
    recap,
    sso,
    timeline,
)

router = APIRouter(include_in_schema=False)
for module in (
    auth,
    cycles,
    gaps,
    actions,
    timeline,
    recap,
    my_work,
    imports,
    numbers,
    notifications,
    account,
):
    router.include_router(module.router)
router.include_router(alignment.router)  # each team's answers, the vote, recurring gaps
router.include_router(breaches.router)  # the cycle's late leads (SLA breach ledger)
for module in (admin, admin_channels, admin_playbooks, password_links, sso):
    router.include_router(module.router)
router.include_router(agreements.router)  # the teams' agreement, campaigns, materials
