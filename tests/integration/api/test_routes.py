"""Uploads, presigned PUTs, signed downloads, jobs, dead letters, stats and error shapes."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.integration.api.conftest import Api, make_api
from vodforge.jobs import ErrorInfo, JobState
from vodforge.storage import UrlSigner

DATA = b"not really a video, but the API does not look" * 100


def _upload(api: Api, who: str = "uploader", **form: str) -> dict[str, object]:
    response = api.client.post(
        "/v1/uploads",
        headers=api.auth(who),
        files={"file": ("My Clip (1).mp4", DATA, "video/mp4")},
        data=form,
    )
    assert response.status_code == 202, response.text
    body: dict[str, object] = response.json()
    return body


def _path(url: str) -> str:
    split = urlsplit(url)
    return f"{split.path}?{split.query}" if split.query else split.path


def test_upload_stores_the_object_and_starts_an_owned_job(api: Api) -> None:
    body = _upload(api)
    job = body["job"]
    assert isinstance(job, dict)
    key = str(job["key"])
    assert key.startswith(f"uploads/{api.key_ids['uploader']}/")
    assert key.endswith("/My_Clip_1_.mp4")
    assert api.ctx.store.get_bytes(key) == DATA
    assert api.ctx.jobs.get_job(str(job["id"])).owner == api.key_ids["uploader"]
    assert body["poster_url"] is None
    assert body["thumbnail_urls"] == []
    assert [m.step for _, m in api.sender.sent] == ["probe"]  # the job's first step was sent
    # The source downloads through its signed URL.
    assert api.client.get(_path(str(body["source_url"]))).content == DATA


def test_a_key_sees_only_its_own_jobs(api: Api) -> None:
    job_id = str(_upload(api)["job"]["id"])  # type: ignore[index]
    assert api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("uploader")).status_code == 200
    assert api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("other")).status_code == 404
    assert api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("admin")).status_code == 200
    mine = api.client.get("/v1/jobs", headers=api.auth("uploader")).json()
    assert [j["id"] for j in mine["items"]] == [job_id]
    assert api.client.get("/v1/jobs", headers=api.auth("other")).json()["items"] == []
    cancel = api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.auth("other"))
    assert cancel.status_code == 404


def test_upload_with_a_preset_and_a_webhook(api: Api) -> None:
    body = _upload(api, preset="mobile", webhook_url="http://127.0.0.1:9/hook")
    job = api.ctx.jobs.get_job(str(body["job"]["id"]))  # type: ignore[index]
    assert job.preset == "mobile"
    assert job.webhook_url == "http://127.0.0.1:9/hook"


def test_bad_uploads_get_one_line_4xx(api: Api) -> None:
    auth = api.auth("uploader")
    unknown = api.client.post(
        "/v1/uploads", headers=auth, files={"file": ("a.mp4", b"x")}, data={"preset": "nope"}
    )
    assert unknown.status_code == 400
    assert "nope" in unknown.json()["error"]["message"]
    no_file = api.client.post("/v1/uploads", headers=auth, data={"preset": "mobile"})
    assert no_file.status_code in (415, 422)
    bad_wait = api.client.post("/v1/uploads?wait=99", headers=auth, files={"file": ("a.mp4", b"x")})
    assert bad_wait.status_code == 422
    assert set(bad_wait.json()) == {"error"}
    assert "wait" in bad_wait.json()["error"]["message"]


def test_empty_upload_is_a_400_and_stores_nothing(api: Api) -> None:
    response = api.client.post(
        "/v1/uploads", headers=api.auth("uploader"), files={"file": ("empty.mp4", b"")}
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "input_empty",
        "message": "the uploaded file is empty (0 bytes)",
    }
    assert not list(api.ctx.store.list("uploads/"))
    assert api.ctx.jobs.list_jobs() == []


def test_upload_past_the_limit_is_413_and_stores_nothing(tmp_path: Path) -> None:
    made, jobs = make_api(tmp_path, max_upload_bytes=1000)
    try:
        with made.client:
            response = made.client.post(
                "/v1/uploads",
                headers=made.auth("uploader"),
                files={"file": ("big.mp4", b"x" * 5000)},
            )
            assert response.status_code == 413
            assert response.json()["error"]["code"] == "too_large"
            assert list(made.ctx.store.list("uploads/")) == []
            assert list((tmp_path / "var" / "tmp").iterdir()) == []
            presign = made.client.post(
                "/v1/uploads/presign",
                headers=made.auth("uploader"),
                json={"filename": "a.mp4", "size": 5000},
            )
            assert presign.status_code == 413
    finally:
        jobs.close()


def test_presigned_put_completes_an_upload_and_starts_a_job(api: Api) -> None:
    auth = api.auth("uploader")
    grant = api.client.post(
        "/v1/uploads/presign",
        headers=auth,
        json={"filename": "clip.mp4", "size": len(DATA), "preset": "mobile"},
    )
    assert grant.status_code == 201, grant.text
    body = grant.json()
    assert body["method"] == "PUT"
    assert body["headers"]["Content-Length"] == str(len(DATA))
    url = _path(body["url"])
    # Wrong length, tampered signature, wrong operation: 403, nothing stored.
    assert api.client.put(url, content=DATA + b"!").status_code == 403
    assert api.client.put(url.replace("sig=", "sig=0"), content=DATA).status_code == 403
    assert api.client.get(url).status_code == 403
    assert not api.ctx.store.exists(body["key"])
    done = api.client.put(url, content=DATA)
    assert done.status_code == 201, done.text
    job = api.ctx.jobs.get_job(done.json()["job_id"])
    assert (job.key, job.owner, job.preset) == (body["key"], api.key_ids["uploader"], "mobile")


def test_signed_downloads_tampered_or_expired_are_403(api: Api) -> None:
    body = _upload(api)
    url = _path(str(body["source_url"]))
    assert api.client.get(url, headers={"Range": "bytes=0-9"}).content == DATA[:10]
    key = str(body["job"]["key"])  # type: ignore[index]
    tampered = url.replace(key.rsplit("/", maxsplit=1)[-1], "other.mp4")
    assert api.client.get(tampered).status_code == 403
    expired = UrlSigner(
        api.ctx.settings.secret(),
        base_url="http://testserver/v1",
        route="objects",
        clock=lambda: time.time() - 7200,
    ).sign("get", key, expires_seconds=60)
    response = api.client.get(_path(expired))
    assert response.status_code == 403
    assert "expired" in response.json()["error"]["message"]
    other_secret = UrlSigner(b"another-secret-0123456789", base_url="http://t/v1", route="objects")
    assert api.client.get(_path(other_secret.sign("get", key))).status_code == 403


def test_create_job_from_an_uploaded_key(api: Api) -> None:
    key = str(_upload(api)["job"]["key"])  # type: ignore[index]
    auth = api.auth("uploader")
    first = api.client.post("/v1/jobs", headers=auth, json={"key": key, "preset": "mobile"})
    assert first.status_code == 201, first.text
    again = api.client.post("/v1/jobs", headers=auth, json={"key": key, "preset": "mobile"})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    theirs = api.client.post("/v1/jobs", headers=api.auth("other"), json={"key": key})
    assert theirs.status_code == 404
    missing = api.client.post("/v1/jobs", headers=auth, json={"key": "../etc/passwd"})
    assert missing.status_code in (400, 404)


def test_cancel_and_retry(api: Api) -> None:
    job_id = str(_upload(api)["job"]["id"])  # type: ignore[index]
    auth = api.auth("uploader")
    assert api.client.post(f"/v1/jobs/{job_id}/retry", headers=auth).status_code == 409
    cancelled = api.client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    again = api.client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    retried = api.client.post(f"/v1/jobs/{job_id}/retry", headers=auth)
    assert retried.status_code == 200
    assert retried.json()["state"] == "queued"


def test_job_detail_dead_letters_and_replay(api: Api) -> None:
    job_id = str(_upload(api)["job"]["id"])  # type: ignore[index]
    jobs = api.ctx.jobs
    assert jobs.start_step(job_id, "probe", worker="host:1") is not None
    error = ErrorInfo(
        label="input_corrupt",
        message="moov atom not found",
        permanent=True,
        worker="host:1",
        argv=("ffmpeg", "-i", "x"),
        exit_code=1,
        stderr="line 1\nline 2\n[mov] moov atom not found\n",
    )
    jobs.fail_attempt(job_id, "probe", error=error, will_retry=False)
    letter = jobs.fail_job(job_id, "probe", error=error)
    detail = api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("uploader")).json()
    assert detail["state"] == "failed"
    assert detail["error"]["type"] == "input_corrupt"
    assert detail["error"]["stderr_tail"].endswith("moov atom not found")
    assert detail["error"]["worker"] == "host:1"
    assert detail["error"]["exit_code"] == 1
    probe = detail["steps"][0]
    assert (probe["name"], probe["state"], probe["attempts"]) == ("probe", "failed", 1)
    mine = api.client.get("/v1/dead-letters", headers=api.auth("uploader")).json()["items"]
    assert [d["id"] for d in mine] == [letter.id]
    assert mine[0]["argv"] == ["ffmpeg", "-i", "x"]
    assert api.client.get("/v1/dead-letters", headers=api.auth("other")).json()["items"] == []
    replayed = api.client.post(f"/v1/dead-letters/{letter.id}/replay", headers=api.auth("admin"))
    assert replayed.status_code == 200
    assert replayed.json()["state"] == "replayed"
    assert jobs.get_job(job_id).state is JobState.QUEUED
    missing = api.client.post("/v1/dead-letters/nope/replay", headers=api.auth("admin"))
    assert missing.status_code == 404


def test_list_filters_paginates_and_validates(api: Api) -> None:
    ids = [str(_upload(api)["job"]["id"]) for _ in range(3)]  # type: ignore[index]
    auth = api.auth("uploader")
    page = api.client.get("/v1/jobs?limit=2", headers=auth).json()
    assert len(page["items"]) == 2
    assert page["next_cursor"]
    rest = api.client.get(f"/v1/jobs?limit=2&cursor={page['next_cursor']}", headers=auth).json()
    assert rest["next_cursor"] is None
    assert {j["id"] for j in page["items"] + rest["items"]} == set(ids)
    queued = api.client.get("/v1/jobs?state=queued", headers=auth).json()["items"]
    assert len(queued) == 3
    assert api.client.get("/v1/jobs?state=running", headers=auth).json()["items"] == []
    bad = api.client.get("/v1/jobs?state=nope", headers=auth)
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_request"
    assert api.client.get("/v1/jobs?cursor=zz", headers=auth).status_code == 400
    assert api.client.get("/v1/jobs/nope", headers=auth).status_code == 404


def test_stats(api: Api) -> None:
    _upload(api)
    body = api.client.get("/v1/stats", headers=api.auth("admin")).json()
    assert body["by_state"]["queued"] == 1
    assert sum(p["count"] for p in body["jobs_per_minute"]) == 1
    other = api.client.get("/v1/stats", headers=api.auth("other")).json()
    assert other["by_state"]["queued"] == 0


def test_presign_refuses_an_empty_upload(api: Api) -> None:
    response = api.client.post(
        "/v1/uploads/presign", headers=api.auth("uploader"), json={"filename": "a.mp4", "size": 0}
    )
    assert response.status_code == 422
    assert "size" in response.json()["error"]["message"]
