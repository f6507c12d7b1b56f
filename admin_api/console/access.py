"""Access: users, service accounts, roles, policies, device credentials, revocation.

Secrets: a service account's secret is in the one answer that creates or
rotates it, so the console shows it in the page answering that POST (no-store,
like every console page) and never again.  A device credential's secret goes
in through a password field and never comes back: the console does not call
the route that reveals it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from admin_api.console.web import (
    Pages,
    api,
    field_errors,
    form,
    form_list,
    redirect,
    render,
    session_of,
)
from admin_api.inprocess import NativeError, segment

pages = Pages()
TABS = (("Overview", "/ui/access", "read:auth"), ("Users", "/ui/access/users", "read:auth"),
        ("Service accounts", "/ui/access/service-accounts", "read:auth"), ("Roles", "/ui/access/roles", "read:auth"),
        ("Policies", "/ui/access/policies", "read:auth"), ("Device credentials", "/ui/access/credentials", "read:smd"))


def _render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    session = session_of(request)
    return render(request, template, status, tabs=[(t, h) for t, h, s in TABS if session.can(s)], **context)


def _failed(exc: NativeError) -> dict[str, Any]:
    """What a re-rendered form shows of a refused change."""
    return {"problem": exc.problem.detail or exc.problem.title, "errors": field_errors(exc)}


def _enabled(values: dict[str, str]) -> bool:
    return values.get("enabled") == "true"


# -- overview and revocation ----------------------------------------------------------------------------


@pages.get("/ui/access", scope="read:auth")
async def overview(request: Request, status: int = 200, **failed: Any) -> Response:
    native = api(request)
    users = await native.json("GET", "/auth/v1/users")
    counts = {"Users": len(users), "Service accounts": len(await native.json("GET", "/auth/v1/service-accounts")),
              "Roles": len(await native.json("GET", "/auth/v1/roles")),
              "Policies": len(await native.json("GET", "/auth/v1/policies"))}
    if session_of(request).can("read:smd"):
        counts["Device credentials"] = len(await native.json("GET", "/auth/v1/credentials"))
    return _render(request, "access.html", status, counts=counts, sessions=sum(u["sessions"] for u in users),
                   disabled=sum(not u["enabled"] for u in users), values=failed.pop("values", {}),
                   problem=failed.get("problem"), errors=failed.get("errors", {}))


@pages.post("/ui/access/revoke", scope="write:auth")
async def revoke(request: Request) -> Response:
    values = await form(request)
    what = values.get("what", "subject")
    target = values.get("target", "").strip()
    body = {"jti": target} if what == "jti" else {"subject": target}
    try:
        done = await api(request).json("POST", "/auth/v1/token/revoke", body=body)
    except NativeError as exc:
        return await overview(request, exc.problem.status, values=values, **_failed(exc))
    return redirect(request, "/ui/access", flash=f"Revoked {done['revoked']}.")


# -- users -----------------------------------------------------------------------------------------------


async def _role_names(request: Request) -> list[str]:
    return [role["name"] for role in await api(request).json("GET", "/auth/v1/roles")]


@pages.get("/ui/access/users", scope="read:auth")
async def users(request: Request, status: int = 200, **failed: Any) -> Response:
    found = await api(request).json("GET", "/auth/v1/users")
    return _render(request, "access_users.html", status, users=found, roles=await _role_names(request),
                   values=failed.get("values", {}), chosen=failed.get("chosen", []),
                   problem=failed.get("problem"), errors=failed.get("errors", {}))


@pages.post("/ui/access/users", scope="write:auth")
async def create_user(request: Request) -> Response:
    values = await form(request)
    chosen = await form_list(request, "roles")
    body = {"username": values.get("username", ""), "displayName": values.get("displayName", ""),
            "password": values.get("password", ""), "roles": chosen}
    try:
        await api(request).json("POST", "/auth/v1/users", body=body)
    except NativeError as exc:
        values.pop("password", None)
        return await users(request, exc.problem.status, values=values, chosen=chosen, **_failed(exc))
    return redirect(request, f"/ui/access/users/{body['username']}", flash=f"User {body['username']} created.")


@pages.get("/ui/access/users/{id}", scope="read:auth")
async def user(request: Request, status: int = 200, **failed: Any) -> Response:
    found = await api(request).json("GET", f"/auth/v1/users/{segment(request.path_params['id'])}")
    return _render(request, "access_user.html", status, user=found, roles=await _role_names(request),
                   problem=failed.get("problem"), errors=failed.get("errors", {}))


@pages.post("/ui/access/users/{id}", scope="write:auth")
async def change_user(request: Request) -> Response:
    username = request.path_params["id"]
    values = await form(request)
    body = {"displayName": values.get("displayName", ""), "roles": await form_list(request, "roles"),
            "enabled": _enabled(values)}
    try:
        await api(request).json("PATCH", f"/auth/v1/users/{segment(username)}", body=body)
    except NativeError as exc:
        return await user(request, exc.problem.status, **_failed(exc))
    return redirect(request, f"/ui/access/users/{username}", flash=f"User {username} saved.")


@pages.post("/ui/access/users/{id}/password", scope="write:auth")
async def set_password(request: Request) -> Response:
    username = request.path_params["id"]
    values = await form(request)
    try:
        await api(request).request("POST", f"/auth/v1/users/{segment(username)}/password",
                                   body={"password": values.get("password", "")})
    except NativeError as exc:
        return await user(request, exc.problem.status, **_failed(exc))
    return redirect(request, f"/ui/access/users/{username}",
                    flash=f"New password set for {username}; its sessions have ended.")


@pages.post("/ui/access/users/{id}/delete", scope="write:auth")
async def delete_user(request: Request) -> Response:
    username = request.path_params["id"]
    await api(request).request("DELETE", f"/auth/v1/users/{segment(username)}")
    return redirect(request, "/ui/access/users", flash=f"User {username} deleted; its sessions have ended.")


# -- service accounts ------------------------------------------------------------------------------------


@pages.get("/ui/access/service-accounts", scope="read:auth")
async def accounts(request: Request, status: int = 200, **failed: Any) -> Response:
    found = await api(request).json("GET", "/auth/v1/service-accounts")
    return _render(request, "access_accounts.html", status, accounts=found, roles=await _role_names(request),
                   values=failed.get("values", {}), chosen=failed.get("chosen", []),
                   problem=failed.get("problem"), errors=failed.get("errors", {}))


@pages.post("/ui/access/service-accounts", scope="write:auth")
async def create_account(request: Request) -> Response:
    values = await form(request)
    chosen = await form_list(request, "roles")
    body = {"clientId": values.get("clientId", ""), "description": values.get("description", ""), "roles": chosen}
    try:
        created = await api(request).json("POST", "/auth/v1/service-accounts", body=body)
    except NativeError as exc:
        return await accounts(request, exc.problem.status, values=values, chosen=chosen, **_failed(exc))
    return _render(request, "access_secret.html", 201, account=created, rotated=False)


@pages.get("/ui/access/service-accounts/{id}", scope="read:auth")
async def account(request: Request, status: int = 200, **failed: Any) -> Response:
    found = await api(request).json("GET", f"/auth/v1/service-accounts/{segment(request.path_params['id'])}")
    return _render(request, "access_account.html", status, account=found, roles=await _role_names(request),
                   problem=failed.get("problem"), errors=failed.get("errors", {}))


@pages.post("/ui/access/service-accounts/{id}", scope="write:auth")
async def change_account(request: Request) -> Response:
    client_id = request.path_params["id"]
    values = await form(request)
    body = {"description": values.get("description", ""), "roles": await form_list(request, "roles"),
            "enabled": _enabled(values)}
    try:
        await api(request).json("PATCH", f"/auth/v1/service-accounts/{segment(client_id)}", body=body)
    except NativeError as exc:
        return await account(request, exc.problem.status, **_failed(exc))
    return redirect(request, f"/ui/access/service-accounts/{client_id}", flash=f"{client_id} saved.")


@pages.post("/ui/access/service-accounts/{id}/secret", scope="write:auth")
async def rotate_secret(request: Request) -> Response:
    rotated = await api(request).json("POST", f"/auth/v1/service-accounts/{segment(request.path_params['id'])}/secret")
    return _render(request, "access_secret.html", account=rotated, rotated=True)


@pages.post("/ui/access/service-accounts/{id}/enabled", scope="write:auth")
async def enable_account(request: Request) -> Response:
    client_id = request.path_params["id"]
    enabled = _enabled(await form(request))
    await api(request).json("PATCH", f"/auth/v1/service-accounts/{segment(client_id)}", body={"enabled": enabled})
    return redirect(request, "/ui/access/service-accounts",
                    flash=f"{client_id} {'enabled' if enabled else 'disabled; its tokens are revoked'}.")


@pages.post("/ui/access/service-accounts/{id}/delete", scope="write:auth")
async def delete_account(request: Request) -> Response:
    client_id = request.path_params["id"]
    await api(request).request("DELETE", f"/auth/v1/service-accounts/{segment(client_id)}")
    return redirect(request, "/ui/access/service-accounts", flash=f"{client_id} deleted; its tokens are revoked.")


# -- roles and policies ----------------------------------------------------------------------------------


@pages.get("/ui/access/roles", scope="read:auth")
async def roles(request: Request, status: int = 200, **failed: Any) -> Response:
    found = await api(request).json("GET", "/auth/v1/roles")
    editing = next((r for r in found if r["name"] == request.query_params.get("edit") and not r["builtin"]), None)
    values = failed.get("values") or ({"name": editing["name"], "description": editing["description"]}
                                      if editing else {})
    chosen = failed.get("chosen") or (editing["scopes"] if editing else [])
    return _render(request, "access_roles.html", status, roles=found, values=values, chosen=chosen,
                   known_scopes=sorted(request.app.state.known_scopes), problem=failed.get("problem"),
                   errors=failed.get("errors", {}))


@pages.post("/ui/access/roles", scope="write:auth")
async def put_role(request: Request) -> Response:
    values = await form(request)
    chosen = await form_list(request, "scopes")
    name = values.get("name", "").strip()
    if not name:
        return await roles(request, 422, values=values, chosen=chosen, problem="A role needs a name.",
                           errors={"name": "required"})
    try:
        await api(request).json("PUT", f"/auth/v1/roles/{segment(name)}",
                                body={"scopes": chosen, "description": values.get("description", "")})
    except NativeError as exc:
        return await roles(request, exc.problem.status, values=values, chosen=chosen, **_failed(exc))
    return redirect(request, "/ui/access/roles", flash=f"Role {name} saved.")


@pages.get("/ui/access/policies", scope="read:auth")
async def policies(request: Request, status: int = 200, **failed: Any) -> Response:
    found = await api(request).json("GET", "/auth/v1/policies")
    return _render(request, "access_policies.html", status, policies=found, roles=await _role_names(request),
                   values=failed.get("values", {}), chosen=failed.get("chosen", []),
                   problem=failed.get("problem"), errors=failed.get("errors", {}))


@pages.post("/ui/access/policies", scope="write:auth")
async def create_policy(request: Request) -> Response:
    values = await form(request)
    chosen = await form_list(request, "roles")
    body = {"issuer": values.get("issuer", "").strip(), "subject": values.get("subject", "").strip(), "roles": chosen}
    try:
        await api(request).json("POST", "/auth/v1/policies", body=body)
    except NativeError as exc:
        return await policies(request, exc.problem.status, values=values, chosen=chosen, **_failed(exc))
    return redirect(request, "/ui/access/policies", flash=f"Policy for {body['subject']} created.")


@pages.post("/ui/access/policies/{id}/delete", scope="write:auth")
async def delete_policy(request: Request) -> Response:
    await api(request).request("DELETE", f"/auth/v1/policies/{segment(request.path_params['id'])}")
    return redirect(request, "/ui/access/policies", flash="Policy deleted; the tokens exchanged under it are revoked.")


# -- device credentials -----------------------------------------------------------------------------------


@pages.get("/ui/access/credentials", scope="read:smd")
async def credentials(request: Request, status: int = 200, **failed: Any) -> Response:
    found = await api(request).json("GET", "/auth/v1/credentials")
    return _render(request, "access_credentials.html", status, credentials=found, values=failed.get("values", {}),
                   problem=failed.get("problem"), errors=failed.get("errors", {}))


@pages.post("/ui/access/credentials", scope="write:credentials")
async def create_credential(request: Request) -> Response:
    values = await form(request)
    body: dict[str, Any] = {"username": values.get("username", ""), "secret": values.get("secret", ""),
                            "description": values.get("description", ""),
                            "tags": [t for t in values.get("tags", "").replace(",", " ").split() if t]}
    if values.get("id", "").strip():
        body["id"] = values["id"].strip()
    try:
        created = await api(request).json("POST", "/auth/v1/credentials", body=body)
    except NativeError as exc:
        values.pop("secret", None)  # a refused form comes back without the secret typed into it
        return await credentials(request, exc.problem.status, values=values, **_failed(exc))
    return redirect(request, "/ui/access/credentials", flash=f"Credential {created['id']} stored.")


@pages.post("/ui/access/credentials/{id}/delete", scope="write:credentials")
async def delete_credential(request: Request) -> Response:
    await api(request).request("DELETE", f"/auth/v1/credentials/{segment(request.path_params['id'])}")
    return redirect(request, "/ui/access/credentials", flash=f"Credential {request.path_params['id']} deleted.")
