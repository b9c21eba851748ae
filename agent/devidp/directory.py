"""The provider's directory page: what an Entra administrator does to offboard someone.

``GET /directory`` lists the users; its forms ``POST /directory`` one change at a time —
block or allow sign-in, move the user to another labelled group, assign the user an app role
(or none; what Enterprise applications > Users and groups does), revoke the user's sessions,
sign the user out everywhere (My Account's button: refresh tokens revoked, no front-channel
call, as in Entra; the sensor ends the session at its next re-validation) — and
come back to the page saying what was done. The forms carry a token only this page knows.
For the demo and tests on loopback only, like the rest of the provider.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlencode

from aiohttp import web

from .endpoint import bind
from .refresh import (
    assign_app_roles,
    disable_user,
    revoke_sessions,
    set_groups,
    sign_out_everywhere,
)
from .state import ProviderState
from .users import DevUser

ACTIONS = ("disable", "enable", "move", "assign_app_role", "revoke", "sign_out_everywhere")


def routes(state: ProviderState) -> list[web.RouteDef]:
    return [bind(state, "GET", "/directory", page), bind(state, "POST", "/directory", change)]


async def page(state: ProviderState, request: web.Request) -> web.StreamResponse:
    state.requests["directory"] += 1
    rows = []
    for user in state.users:
        labelled = [state.group_labels[g] for g in user.groups if g in state.group_labels]
        rows.append({"username": user.username, "name": user.name, "disabled": user.disabled,
                     "groups": ", ".join(labelled) or "no labelled group",
                     "other_groups": sum(g not in state.group_labels for g in user.groups),
                     "app_roles": app_roles_text(state, user)})
    return state.render("directory.html", users=rows, labels=sorted(
        state.group_labels.items(), key=lambda kv: kv[1]), token=state.directory_token,
        done=request.query.get("done", "")[:200], app_name=state.app_name,
        app_roles=list(state.app_roles.items()))


def app_roles_text(state: ProviderState, user: DevUser) -> str:
    """``Sensor.Admin (direct), Sensor.ReadOnly (via Operators)``, or ``none``."""
    parts = []
    for value in state.assigned_app_roles(user):
        via = [state.group_labels.get(g, g) for g in user.groups
               if value in state.group_app_roles.get(g, ())]
        how = ["direct"] if value in user.app_roles else []
        parts.append(f"{value} ({', '.join(how + [f'via {v}' for v in via])})")
    return ", ".join(parts) or "none"


async def change(state: ProviderState, request: web.Request) -> web.StreamResponse:
    """One directory change from the page's form; 303 back with what happened."""
    state.requests["directory_change"] += 1
    form = {k: str(v) for k, v in (await request.post()).items()}
    if not hmac.compare_digest(form.get("token", "").encode(), state.directory_token.encode()):
        return state.error_page(None, "This form is stale: reload the directory page.",
                                status=403)
    action, username = form.get("action", ""), form.get("username", "")
    user = state.user_by_username(username)
    if action not in ACTIONS or user is None:
        return state.error_page(None, "Unknown action or user.", status=400)
    if action in ("disable", "enable"):
        disable_user(state, user.username, disabled=action == "disable")
        done = f"{user.username}: sign-in {'blocked' if action == 'disable' else 'allowed'}"
    elif action == "move":
        group = form.get("group", "")
        if group and group not in state.group_labels:
            return state.error_page(None, "Unknown group.", status=400)
        kept = [g for g in user.groups if g not in state.group_labels]
        set_groups(state, user.username, kept + ([group] if group else []))
        done = f"{user.username}: now in {state.group_labels.get(group, 'no labelled group')}"
    elif action == "assign_app_role":
        value = form.get("app_role", "")
        if value and value not in state.app_roles:
            return state.error_page(None, "Unknown app role.", status=400)
        assign_app_roles(state, user.username, [value] if value else [])
        done = f"{user.username}: app role {value or 'none'} assigned directly"
    elif action == "revoke":
        revoke_sessions(state, user.username)
        done = f"{user.username}: sessions revoked"
    else:
        sign_out_everywhere(state, user.username)
        done = f"{user.username}: signed out everywhere (refresh tokens revoked; no " \
               "front-channel sign-out is sent: applications notice at their next refresh)"
    return web.Response(status=303, headers={"Location": "/directory?" + urlencode(
        {"done": done})})
