"""Synchronous upload through the HTTP API (issue 4's bar): a 10 s 1280x720 clip (lavfi
testsrc2 + sine) is POSTed to ``/v1/uploads?wait=30`` of a real ``vodforge serve`` (embedded
broker, one worker process, SQLite, LocalStore); reports the time until the answer with the
poster, thumbnail and GIF URLs, and until the whole job (HLS + MP4 ladder, verified) is done.

    .venv/bin/python bench/api_sync.py [--repeat 5]

Reports; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from vodforge.media.samples import make_sample
from vodforge.media.toolchain import load_toolchain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vodforge-bench-api-") as tmp:
        root = Path(tmp)
        data = root / "var"
        env = dict(os.environ) | {"VODFORGE_DATA_DIR": str(data), "VODFORGE_HTTP_PORT": "0"}
        clips = []
        toolchain = load_toolchain()
        for i in range(args.repeat):
            # A different clip each time: the same bytes would be a duplicate job.
            clip = root / f"clip{i}.mp4"
            make_sample(
                "hd_audio",
                clip,
                ffmpeg=toolchain.path,
                seconds=args.seconds + i * 0.04,
                size=(1280, 720),
            )
            clips.append(clip)
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "vodforge",
                "keys",
                "create",
                "--name",
                "bench",
                "--scope",
                "upload,read",
                "--json",
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        token = json.loads(made.stdout)["key"]
        serve = subprocess.Popen(
            [sys.executable, "-m", "vodforge", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while not (data / "serve.json").exists():
                if serve.poll() is not None:
                    raise SystemExit("serve exited")
                time.sleep(0.05)
            port = json.loads((data / "serve.json").read_text())["port"]
            base = f"http://127.0.0.1:{port}"
            auth = {"Authorization": f"Bearer {token}"}
            quick: list[float] = []
            whole: list[float] = []
            with httpx.Client(base_url=base, headers=auth, timeout=120) as client:
                for clip in clips:
                    t0 = time.monotonic()
                    with clip.open("rb") as f:
                        r = client.post("/v1/uploads?wait=30", files={"file": (clip.name, f)})
                    t1 = time.monotonic() - t0
                    body = r.json()
                    ok = r.status_code == 200 and body["poster_url"] and body["gif_url"]
                    job_id = body["job"]["id"]
                    while client.get(f"/v1/jobs/{job_id}").json()["state"] in ("queued", "running"):
                        time.sleep(0.1)
                    t2 = time.monotonic() - t0
                    state = client.get(f"/v1/jobs/{job_id}").json()["state"]
                    print(
                        f"{clip.name}: HTTP {r.status_code} previews={'yes' if ok else 'NO'} "
                        f"answer {t1:.2f} s, job {state} after {t2:.2f} s"
                    )
                    quick.append(t1)
                    whole.append(t2)
            print(
                f"median: sync answer {statistics.median(quick):.2f} s, "
                f"whole job {statistics.median(whole):.2f} s ({len(quick)} runs)"
            )
        finally:
            serve.terminate()
            serve.wait(60)


if __name__ == "__main__":
    main()
