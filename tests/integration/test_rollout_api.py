"""``/v1/toolchains`` and ``/v1/rollouts`` on a real job store (auth is the app's: here a
dependency that refuses requests without an admin header stands in for it)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from fastapi import FastAPI, Header, HTTPException

from vodforge.api.rollouts import rollout_router
from vodforge.jobs import JobStore
from vodforge.media.toolchain import Toolchain, load_toolchain
from vodforge.rollout.registry import Registry
from vodforge.rollout.service import RolloutService


def admin_only(x_role: str = Header(default="")) -> None:
    if x_role != "admin":
        raise HTTPException(403, "admin only")


def test_toolchains_and_rollouts(tmp_path: Path, toolchain: Toolchain) -> None:
    jobs = JobStore.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    registry = Registry(jobs)
    stable = registry.ensure_stable(toolchain)
    copy = tmp_path / "ffmpeg"
    shutil.copy2(toolchain.path, copy)
    candidate = registry.add(load_toolchain(copy))
    app = FastAPI()
    app.include_router(rollout_router(RolloutService(jobs, registry), registry, admin=[admin_only]))
    with warnings.catch_warnings():
        # starlette's TestClient warns about its httpx transport on import.
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    client = TestClient(app)
    admin = {"x-role": "admin"}

    items = client.get("/v1/toolchains").json()["items"]
    assert [(t["id"], t["stable"]) for t in items] == [(stable.id, True), (candidate.id, False)]
    assert items[0]["capabilities"]["missing_encoders"] == []

    body = {
        "candidate": candidate.id,
        "steps": [10, 100],
        "min_jobs": 2,
        "max_failure_rate": "0.1%",
        "max_p95_regression": 0.2,
    }
    assert client.post("/v1/rollouts", json=body).status_code == 403
    started = client.post("/v1/rollouts", json=body, headers=admin)
    assert started.status_code == 201, started.text
    rollout = started.json()
    assert (rollout["state"], rollout["weight_percent"], rollout["stable"]) == (
        "running",
        10,
        stable.id,
    )
    assert rollout["max_failure_rate"] == 0.001
    assert rollout["decisions"][0]["action"] == "start"
    again = client.post("/v1/rollouts", json=body, headers=admin)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    bad = client.post("/v1/rollouts", json=body | {"steps": [50, 10]}, headers=admin)
    assert bad.status_code == 422
    unknown = client.post("/v1/rollouts", json=body | {"candidate": "nope"}, headers=admin)
    assert unknown.status_code == 422

    aborted = client.post(f"/v1/rollouts/{rollout['id']}/abort", headers=admin).json()
    assert (aborted["state"], aborted["weight_percent"]) == ("aborted", 0)
    assert [d["action"] for d in aborted["decisions"]] == ["start", "abort"]
    listed = client.get("/v1/rollouts").json()["items"]
    assert [r["id"] for r in listed] == [rollout["id"]]
    assert client.post("/v1/rollouts/nope/abort", headers=admin).status_code == 404
    jobs.close()
