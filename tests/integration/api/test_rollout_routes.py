"""The rollout routes as the real app mounts them: behind the API's own keys and scopes."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.integration.api.conftest import Api
from vodforge.media.toolchain import Toolchain, load_toolchain
from vodforge.rollout.registry import Registry


def test_rollouts_need_read_to_see_and_admin_to_start_or_abort(
    api: Api, tmp_path: Path, toolchain: Toolchain
) -> None:
    registry = Registry(api.ctx.jobs)
    stable = registry.ensure_stable(toolchain)
    copy = tmp_path / "ffmpeg-copy"
    shutil.copy2(toolchain.path, copy)
    candidate = registry.add(load_toolchain(copy))
    c = api.client

    assert c.get("/v1/rollouts").status_code == 401
    assert c.get("/v1/toolchains", headers={"Authorization": "Bearer vf_x_y"}).status_code == 401
    listed = c.get("/v1/toolchains", headers=api.auth("reader")).json()["items"]
    assert {t["id"] for t in listed} == {stable.id, candidate.id}
    assert c.get("/v1/rollouts", headers=api.auth("reader")).json() == {"items": []}

    body = {"candidate": candidate.id, "steps": [10, 100], "min_jobs": 2}
    refused = c.post("/v1/rollouts", json=body, headers=api.auth("uploader"))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"]

    started = c.post("/v1/rollouts", json=body, headers=api.auth("admin"))
    assert started.status_code == 201, started.text
    rollout = started.json()
    assert (rollout["candidate"], rollout["state"], rollout["weight_percent"]) == (
        candidate.id,
        "running",
        10,
    )
    again = c.post("/v1/rollouts", json=body, headers=api.auth("admin"))
    assert again.status_code == 409

    seen = c.get("/v1/rollouts", headers=api.auth("reader")).json()["items"]
    assert [r["id"] for r in seen] == [rollout["id"]]
    assert seen[0]["decisions"][0]["action"] == "start"

    assert (
        c.post(f"/v1/rollouts/{rollout['id']}/abort", headers=api.auth("reader")).status_code == 403
    )
    aborted = c.post(f"/v1/rollouts/{rollout['id']}/abort", headers=api.auth("admin"))
    assert aborted.status_code == 200
    assert aborted.json()["state"] == "aborted"
    assert aborted.json()["decisions"][-1]["action"] == "abort"
