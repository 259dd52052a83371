"""verify_outputs on a tiny real layout made by the pinned ffmpeg, and on broken copies of it."""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import pytest

from vodforge.errors import ToolchainError, VerificationError
from vodforge.media.hls import (
    AAC_LC_CODECS,
    AudioEntry,
    VariantEntry,
    codecs_from_avcc,
    render_master,
    segment_bitrates,
    write_master,
)
from vodforge.media.toolchain import load_toolchain
from vodforge.media.verify import (
    UpstreamDecode,
    VerificationReport,
    decode_segment,
    top_level_boxes,
    verify_outputs,
)

FPS = 30
SECONDS = 6
FRAMES = FPS * SECONDS
SEGMENT_SECONDS = 2
RUNGS: dict[str, tuple[int, int]] = {"180p": (320, 180), "90p": (160, 90)}
X264 = [
    "-c:v", "libx264", "-preset", "veryfast", "-crf", "30", "-pix_fmt", "yuv420p",
    "-g", str(FPS * SEGMENT_SECONDS), "-keyint_min", str(FPS * SEGMENT_SECONDS),
    "-sc_threshold", "0",
]  # fmt: skip


@pytest.fixture(scope="session")
def ffmpeg() -> Path:
    try:
        toolchain = load_toolchain()
    except ToolchainError as exc:
        pytest.skip(f"pinned ffmpeg unavailable: {exc}")
    if "libx264" not in toolchain.encoders or "aac" not in toolchain.encoders:
        pytest.skip("pinned ffmpeg lacks libx264 or aac")
    return toolchain.path


def _run(ffmpeg: Path, *args: str) -> None:
    argv = [str(ffmpeg), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def _hls(ffmpeg: Path, source: Path, stream: str, rendition: Path) -> None:
    rendition.mkdir(parents=True)
    _run(
        ffmpeg, "-i", f"file:{source}", "-map", f"0:{stream}:0", "-c", "copy",
        "-f", "hls", "-hls_time", str(SEGMENT_SECONDS), "-hls_playlist_type", "vod",
        "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
        "-hls_segment_filename", f"file:{rendition}/seg_%05d.m4s",
        "-hls_flags", "independent_segments", f"file:{rendition}/index.m3u8",
    )  # fmt: skip


def _video_codecs(init: Path) -> str:
    with av.open(str(init)) as container:
        extradata = container.streams.video[0].codec_context.extradata
    assert extradata is not None
    return codecs_from_avcc(bytes(extradata))


def _master(out: Path, rungs: list[str], *, audio: bool) -> str:
    hls = out / "hls"
    audio_entry = None
    if audio:
        peak, average = segment_bitrates(hls / "audio" / "index.m3u8")
        audio_entry = AudioEntry("audio/index.m3u8", AAC_LC_CODECS, peak, average, channels=2)
    variants = []
    for rung in rungs:
        peak, average = segment_bitrates(hls / rung / "index.m3u8")
        width, height = RUNGS[rung]
        codecs = _video_codecs(hls / rung / "init.mp4")
        variants.append(
            VariantEntry(f"{rung}/index.m3u8", width, height, Fraction(FPS), codecs, peak, average)
        )
    return render_master(variants, audio_entry)


def _build_layout(ffmpeg: Path, root: Path, *, audio: bool) -> Path:
    out = root / "out"
    (out / "mp4").mkdir(parents=True)
    inputs = ["-f", "lavfi", "-i", f"testsrc2=s=320x180:r={FPS}:d={SECONDS}"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=d={SECONDS}"]
    names = list(RUNGS)
    scales = ";".join(f"[v{i}]scale={w}:{h}[o{i}]" for i, (w, h) in enumerate(RUNGS.values()))
    graph = f"[0:v]split={len(names)}" + "".join(f"[v{i}]" for i in range(len(names)))
    args = [*inputs, "-filter_complex", f"{graph};{scales}"]
    for i, rung in enumerate(names):
        args += ["-map", f"[o{i}]", *X264]
        if audio:
            args += ["-map", "1:a", "-c:a", "aac", "-b:a", "64k", "-ac", "2"]
        args += ["-movflags", "+faststart", f"file:{out / 'mp4' / rung}.mp4"]
    _run(ffmpeg, *args)
    for rung in names:
        _hls(ffmpeg, out / "mp4" / f"{rung}.mp4", "v", out / "hls" / rung)
    if audio:
        _hls(ffmpeg, out / "mp4" / f"{names[0]}.mp4", "a", out / "hls" / "audio")
    write_master(out / "hls" / "master.m3u8", _master(out, names, audio=audio))
    return out


@pytest.fixture(scope="session")
def layout(ffmpeg: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_layout(ffmpeg, tmp_path_factory.mktemp("vod"), audio=True)


@pytest.fixture(scope="session")
def silent_layout(ffmpeg: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_layout(ffmpeg, tmp_path_factory.mktemp("vod_silent"), audio=False)


@pytest.fixture
def broken(layout: Path, tmp_path: Path) -> Path:
    """A private copy of the good layout for a test to damage."""
    return Path(shutil.copytree(layout, tmp_path / "out"))


def _verify(out: Path, **overrides: object) -> VerificationReport:
    kwargs: dict[str, object] = {
        "rungs": list(RUNGS),
        "expected_frames": FRAMES,
        "frame_rate": Fraction(FPS),
        "has_audio": True,
    }
    kwargs.update(overrides)
    return verify_outputs(out, **kwargs)  # type: ignore[arg-type]


def _failed(report: VerificationReport) -> set[str]:
    return {check.name for check in report.failures()}


def test_good_layout_passes(layout: Path) -> None:
    report = _verify(layout)
    assert report.ok, report.failures()
    report.raise_for_failures()
    names = {check.name for check in report.checks}
    for rung in RUNGS:
        assert {
            f"hls.{rung}.playlist",
            f"hls.{rung}.target_duration",
            f"hls.{rung}.segments_exist",
            f"hls.{rung}.decode",
            f"hls.{rung}.resolution",
            f"hls.{rung}.frames",
            f"hls.{rung}.duration",
            f"mp4.{rung}.faststart",
            f"mp4.{rung}.codec",
            f"mp4.{rung}.frames",
            f"mp4.{rung}.duration",
            f"mp4.{rung}.audio",
            f"mp4.{rung}.av_offset",
            f"hls.{rung}.matches_mp4",
        } <= names
    assert {"hls.master.parses", "hls.master.rungs", "hls.audio.decode"} <= names
    frames = next(c for c in report.checks if c.name == "hls.180p.frames")
    assert frames.detail == f"{FRAMES} == {FRAMES}"
    assert report.frames_decoded == FRAMES * len(RUNGS)
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["ok"] is True
    assert as_json["failures"] == []


def test_master_carries_what_players_need(layout: Path) -> None:
    text = (layout / "hls" / "master.m3u8").read_text()
    assert text.startswith("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n")
    assert 'CODECS="avc1.64' in text  # veryfast libx264 is High profile
    assert ',mp4a.40.2",FRAME-RATE=30.000,AUDIO="aud"' in text


def test_silent_layout_passes_without_audio(silent_layout: Path) -> None:
    report = _verify(silent_layout, has_audio=False)
    assert report.ok, report.failures()
    assert not any(check.name.startswith("hls.audio") for check in report.checks)


def test_silent_layout_fails_when_audio_expected(silent_layout: Path) -> None:
    failed = _failed(_verify(silent_layout, has_audio=True))
    assert {"hls.master.audio", "hls.audio.playlist", "mp4.180p.audio"} <= failed


def test_hls_only_and_mp4_only(layout: Path) -> None:
    hls_only = _verify(layout, mp4=False, max_workers=1)
    mp4_only = _verify(layout, hls=False)
    assert hls_only.ok
    assert mp4_only.ok
    assert not any(c.name.startswith("mp4.") for c in hls_only.checks)
    assert not any(c.name.startswith("hls.") for c in mp4_only.checks)


def _mdat_middle(path: Path) -> int:
    mdat = next(box for box in top_level_boxes(path) if box.type == "mdat")
    return mdat.offset + mdat.size // 2


def test_corrupted_segment_fails_decode(broken: Path) -> None:
    segment = broken / "hls" / "180p" / "seg_00001.m4s"
    data = bytearray(segment.read_bytes())
    middle = _mdat_middle(segment)
    data[middle : middle + 64] = b"\xa5" * 64
    segment.write_bytes(bytes(data))

    report = _verify(broken)
    failed = _failed(report)
    assert "hls.180p.decode" in failed
    assert "hls.180p.matches_mp4" in failed
    assert "hls.90p.decode" not in failed
    decode = next(c for c in report.failures() if c.name == "hls.180p.decode")
    assert "seg_00001.m4s" in decode.detail
    with pytest.raises(VerificationError, match=r"(?m)^hls\.180p\.decode: "):
        report.raise_for_failures()


def test_damage_that_decodes_cleanly_is_caught_by_packet_match(broken: Path) -> None:
    """H.264 has no checksum: many flipped bytes decode without error. The MP4 still knows."""
    segment = broken / "hls" / "90p" / "seg_00001.m4s"
    init = (broken / "hls" / "90p" / "init.mp4").read_bytes()
    original = segment.read_bytes()
    mdat = next(box for box in top_level_boxes(segment) if box.type == "mdat")
    for offset in range(mdat.offset + mdat.size - 40, mdat.offset + 16, -997):
        data = bytearray(original)
        data[offset] ^= 0x10
        try:
            decoded = decode_segment(init + bytes(data), "video")
        except (ValueError, av.error.FFmpegError):
            continue
        if decoded.frames == FPS * SEGMENT_SECONDS:
            segment.write_bytes(bytes(data))
            break
    else:
        pytest.skip("every probed byte flip was caught by the decoder itself")

    failed = _failed(_verify(broken))
    assert failed == {"hls.90p.matches_mp4"}


def test_missing_segment_fails(broken: Path) -> None:
    (broken / "hls" / "90p" / "seg_00002.m4s").unlink()
    failed = _failed(_verify(broken))
    assert "hls.90p.segments_exist" in failed
    assert "hls.90p.frames" in failed
    assert "hls.90p.matches_mp4" in failed
    assert not any(name.startswith("hls.180p") for name in failed)


def test_wrong_expected_frames_fails(layout: Path) -> None:
    report = _verify(layout, expected_frames=FRAMES + 1)
    failed = _failed(report)
    assert {"hls.180p.frames", "hls.90p.frames", "mp4.180p.frames", "mp4.90p.frames"} <= failed
    detail = next(c.detail for c in report.checks if c.name == "hls.180p.frames")
    assert detail == f"{FRAMES} != {FRAMES + 1}"


def test_wrong_duration_fails(layout: Path) -> None:
    # Same frames at half the rate: every duration is off by seconds, not by a frame.
    failed = _failed(_verify(layout, frame_rate=Fraction(FPS * 2)))
    assert {"hls.180p.duration", "mp4.180p.duration", "hls.audio.duration"} <= failed


def test_mp4_without_faststart_fails(ffmpeg: Path, broken: Path) -> None:
    mp4 = broken / "mp4" / "90p.mp4"
    slow = mp4.with_name("slow.mp4")
    _run(ffmpeg, "-i", f"file:{mp4}", "-map", "0", "-c", "copy", f"file:{slow}")
    slow.replace(mp4)
    types = [box.type for box in top_level_boxes(mp4)]
    assert types.index("mdat") < types.index("moov")

    report = _verify(broken)
    assert _failed(report) == {"mp4.90p.faststart"}


def test_master_missing_a_rung_fails(broken: Path) -> None:
    master = broken / "hls" / "master.m3u8"
    write_master(master, _master(broken, ["180p"], audio=True))
    report = _verify(broken)
    assert _failed(report) == {"hls.master.rungs"}
    detail = next(c.detail for c in report.failures())
    assert "missing 90p/index.m3u8" in detail


def test_master_that_is_not_a_playlist_fails(broken: Path) -> None:
    (broken / "hls" / "master.m3u8").write_text("not a playlist\n")
    assert "hls.master.parses" in _failed(_verify(broken))


@pytest.mark.parametrize("rungs", [[], ["180p", "180p"], ["../x"], ["audio"]])
def test_unusable_rung_names_are_refused(layout: Path, rungs: list[str]) -> None:
    with pytest.raises(VerificationError):
        _verify(layout, rungs=rungs)


def test_empty_report_is_not_ok() -> None:
    report = VerificationReport()
    assert not report.ok
    with pytest.raises(VerificationError, match="no checks"):
        report.raise_for_failures()


def test_largesize_box_header(tmp_path: Path) -> None:
    path = tmp_path / "boxes.mp4"
    ftyp = (16).to_bytes(4, "big") + b"ftypisom" + b"\0\0\0\0"
    moov = (1).to_bytes(4, "big") + b"moov" + (24).to_bytes(8, "big") + b"\0" * 8
    mdat = (0).to_bytes(4, "big") + b"mdat" + b"\x01" * 10
    path.write_bytes(ftyp + moov + mdat)
    boxes = top_level_boxes(path)
    assert [(b.type, b.offset, b.size) for b in boxes] == [
        ("ftyp", 0, 16),
        ("moov", 16, 24),
        ("mdat", 40, 18),
    ]


def _upstream_from_mp4(out: Path) -> dict[str, UpstreamDecode]:
    """What the transcode's chunk pass hands over: every packet strictly decoded (here from
    the MP4, which carries the same packets)."""
    upstream = {}
    for rung in RUNGS:
        decoded = decode_segment((out / "mp4" / f"{rung}.mp4").read_bytes(), "video")
        upstream[rung] = UpstreamDecode(digests=decoded.payload_digests, frames=decoded.frames)
    return upstream


def test_upstream_decoded_layout_passes_without_decoding_again(layout: Path) -> None:
    full = _verify(layout)
    quick = _verify(layout, upstream=_upstream_from_mp4(layout))
    assert quick.ok, quick.failures()
    assert [c.name for c in quick.checks] == [c.name for c in full.checks]
    detail = next(c.detail for c in quick.checks if c.name == f"hls.{next(iter(RUNGS))}.decode")
    assert "start with a decodable IDR" in detail


def test_upstream_mode_catches_a_damaged_segment(broken: Path) -> None:
    upstream = _upstream_from_mp4(broken)
    segment = broken / "hls" / "90p" / "seg_00001.m4s"
    data = bytearray(segment.read_bytes())
    data[_mdat_middle(segment)] ^= 0x10
    segment.write_bytes(bytes(data))
    failed = _failed(_verify(broken, upstream=upstream, mp4=False))
    assert failed == {"hls.90p.decode"}


def test_upstream_mode_catches_packets_that_were_never_decoded(layout: Path) -> None:
    upstream = _upstream_from_mp4(layout)
    rung = next(iter(RUNGS))
    tampered = list(upstream[rung].digests)
    tampered[5] = b"\0" * len(tampered[5])
    upstream[rung] = UpstreamDecode(digests=tampered, frames=upstream[rung].frames)
    report = _verify(layout, upstream=upstream)
    assert _failed(report) == {f"hls.{rung}.decode"}
    assert "packet 5 differs" in next(c.detail for c in report.failures())


def test_decode_mp4_decodes_each_frame_once_and_starts_the_segments(layout: Path) -> None:
    full = _verify(layout)
    in_mp4 = _verify(layout, decode_mp4=True)
    assert in_mp4.ok, in_mp4.failures()
    assert in_mp4.frames_decoded == full.frames_decoded == FRAMES * len(RUNGS)
    details = {check.name: check.detail for check in in_mp4.checks}
    for rung in RUNGS:
        assert details[f"mp4.{rung}.decode"] == f"{FRAMES} frames decode strictly"
        assert "start with a decodable IDR" in details[f"hls.{rung}.decode"]
        assert f"hls.{rung}.matches_mp4" in details


def test_mp4_only_still_decodes_every_frame(layout: Path) -> None:
    report = _verify(layout, hls=False)
    assert report.ok, report.failures()
    assert report.frames_decoded == FRAMES * len(RUNGS)
    assert {f"mp4.{rung}.decode" for rung in RUNGS} <= {c.name for c in report.checks}


def test_decode_mp4_catches_a_damaged_segment_by_its_packets(broken: Path) -> None:
    segment = broken / "hls" / "90p" / "seg_00001.m4s"
    data = bytearray(segment.read_bytes())
    data[_mdat_middle(segment)] ^= 0x10
    segment.write_bytes(bytes(data))
    failed = _failed(_verify(broken, decode_mp4=True))
    assert "hls.90p.matches_mp4" in failed
    assert failed <= {"hls.90p.matches_mp4", "hls.90p.decode"}


def test_decode_mp4_catches_a_damaged_mp4(broken: Path) -> None:
    mp4 = broken / "mp4" / "180p.mp4"
    data = bytearray(mp4.read_bytes())
    middle = _mdat_middle(mp4)
    data[middle : middle + 64] = b"\xa5" * 64
    mp4.write_bytes(bytes(data))
    report = _verify(broken, decode_mp4=True)
    failed = _failed(report)
    # The MP4's own decode fails, or (a flip that decodes cleanly) its packets stop matching.
    assert failed & {"mp4.180p.decode", "hls.180p.matches_mp4"}
    assert "hls.180p.decode" not in failed
    assert not any(name.startswith("hls.90p") or name.startswith("mp4.90p") for name in failed)


def test_audio_segments_decode_as_one_stream(layout: Path) -> None:
    detail = next(c.detail for c in _verify(layout).checks if c.name == "hls.audio.decode")
    segments = len(list((layout / "hls" / "audio").glob("seg_*.m4s")))
    assert detail.startswith(f"{segments} segments decode")
    assert "as one stream" in detail


def test_a_damaged_audio_segment_is_named(broken: Path) -> None:
    segment = broken / "hls" / "audio" / "seg_00001.m4s"
    data = bytearray(segment.read_bytes())
    moof = next(box for box in top_level_boxes(segment) if box.type == "moof")
    data[moof.offset + 8 : moof.offset + moof.size] = b"\xff" * (moof.size - 8)
    segment.write_bytes(bytes(data))
    report = _verify(broken)
    assert "hls.audio.decode" in _failed(report)
    detail = next(c.detail for c in report.failures() if c.name == "hls.audio.decode")
    assert "seg_00001.m4s" in detail
    assert "seg_00000.m4s" not in detail


def test_an_empty_audio_segment_is_named(broken: Path) -> None:
    (broken / "hls" / "audio" / "seg_00002.m4s").write_bytes(b"")
    report = _verify(broken)
    assert "hls.audio.decode" in _failed(report)
    detail = next(c.detail for c in report.failures() if c.name == "hls.audio.decode")
    assert "seg_00002.m4s" in detail


def test_a_verifier_that_crashes_fails_its_check_and_the_rest_still_run(
    layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from vodforge.media import verify

    threads: set[int] = set()
    real = verify._verify_hls_rung

    def crashing_mp4(*args: object, **kwargs: object) -> None:
        threads.add(threading.get_ident())
        raise RuntimeError("a bug in the MP4 check")

    def recording_rung(*args: Any, **kwargs: Any) -> Any:
        threads.add(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(verify, "_verify_mp4", crashing_mp4)
    monkeypatch.setattr(verify, "_verify_hls_rung", recording_rung)
    report = _verify(layout, max_workers=2)
    assert _failed(report) == {f"mp4.{rung}.error" for rung in RUNGS}
    assert "a bug in the MP4 check" in report.failures()[0].detail
    assert {f"hls.{rung}.decode" for rung in RUNGS} <= {c.name for c in report.checks}
    assert 1 <= len(threads) <= 2  # the caller and at most one helper
