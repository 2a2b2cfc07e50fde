"""The REST API, ``/api/v1``: everything the pages do, as JSON.

Authentication: ``Authorization: Bearer <personal access token>`` (or a browser session plus
``X-CSRF-Token`` on writes). Errors: ``{"error": {"code": "...", "message": "..."}}`` with
401/403/404/409/422. Lists are pages: ``?limit=&offset=`` → ``{items, total, limit, offset,
next_offset}``. Every write goes through the domain services (rules, audit log) in one unit of
work per request.
"""

from fastapi import APIRouter

from aligncycle.web.api import (
    account,
    actions,
    agreements,
    alignment,
    cycles,
    gaps,
    imports,
    inbox,
    next_cycle,
    notifications,
    numbers,
    organisation,
    recap,
    sources,
)
from aligncycle.web.api.common import ERRORS

router = APIRouter(responses=ERRORS)
for module in (
    organisation,
    cycles,
    gaps,
    actions,
    recap,
    numbers,
    imports,
    sources,
    notifications,
    account,
    inbox,
):
    router.include_router(module.router)
router.include_router(alignment.router)  # each team's answers, the vote, recurring gaps
router.include_router(agreements.router)  # the teams' agreement, campaigns, materials
router.include_router(next_cycle.router)  # the SLA breach ledger, scheduled starts
