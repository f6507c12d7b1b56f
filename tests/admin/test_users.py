"""/auth/v1/users: the console's people.  The last enabled user who may manage access cannot be disabled,
demoted or deleted: nobody could mend it from the console afterwards."""

from __future__ import annotations

PASSWORD = "a long enough password 1"


async def _user(api, username: str, roles: list[str]) -> None:
    answer = await api.post("/auth/v1/users", json={"username": username, "password": PASSWORD, "roles": roles})
    assert answer.status_code == 201, answer.text


async def test_the_last_user_managing_access_stays(api, conn):
    await _user(api, "root", ["admin"])
    await _user(api, "olga", ["operator"])
    for change in ({"enabled": False}, {"roles": ["viewer"]}):
        refused = await api.patch("/auth/v1/users/root", json=change)
        assert refused.status_code == 409 and "last enabled user" in refused.json()["detail"], refused.text
    assert (await api.delete("/auth/v1/users/root")).status_code == 409
    row = await conn.fetchrow("SELECT enabled, roles FROM auth.users WHERE username = 'root'")
    assert row["enabled"] and list(row["roles"]) == ["admin"]  # nothing changed
    # Others change freely; and once a second user may manage access, the first may go.
    assert (await api.patch("/auth/v1/users/olga", json={"enabled": False})).status_code == 200
    assert (await api.patch("/auth/v1/users/olga", json={"enabled": True, "roles": ["admin"]})).status_code == 200
    assert (await api.patch("/auth/v1/users/root", json={"enabled": False})).status_code == 200
    assert (await api.delete("/auth/v1/users/root")).status_code == 204
    assert (await api.delete("/auth/v1/users/olga")).status_code == 409
    assert await conn.fetchval("SELECT username FROM auth.users") == "olga"
