"""The ffmpeg calls and files of each step of a job, from its plan and local paths (no execution).

Shared by the one-machine ``transcode`` and the runtime's step functions, so both run exactly the
same argv and write exactly the same layout:

    <stage>/hls/master.m3u8, hls/<rung>/index.m3u8 + init.mp4 + *.m4s, hls/audio/…
    <stage>/mp4/<rung>.mp4
    <stage>/previews/poster.jpg, thumb_NNN.jpg, sprite.jpg, sprite.vtt, preview.gif
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vodforge import __version__
from vodforge.errors import VodforgeError
from vodforge.media import argv as ffargv
from vodforge.media.chunks import Chunk
from vodforge.media.hls import (
    AudioEntry,
    MediaPlaylistSummary,
    VariantEntry,
    codecs_from_avcc,
    fix_target_duration,
    parse_media_playlist,
    render_master,
    segment_bitrates,
)
from vodforge.media.isobmff import avcc_record
from vodforge.media.plan import JobPlan
from vodforge.media.previews import render_sprite_vtt
from vodforge.media.runner import FfmpegCall
from vodforge.media.verify import UpstreamDecode, VerificationReport, verify_outputs

AAC_LC = "mp4a.40.2"
#: Top-level folders of a published job (manifest.json sits beside them).
PUBLISHED = ("hls", "mp4", "previews")


def chunk_name(chunk_index: int, rung: str) -> str:
    return f"c{chunk_index:04d}_{rung}.mp4"


def chunk_files(plan: JobPlan, directory: Path) -> dict[tuple[int, str], Path]:
    """Where each (chunk, rung) encode is written."""
    return {
        (ch.index, r.name): directory / chunk_name(ch.index, r.name)
        for ch in plan.chunks.chunks
        for r in plan.renditions
    }


def chunk_label(plan: JobPlan, chunk: Chunk) -> str:
    return f"chunk {chunk.index + 1}/{len(plan.chunks.chunks)}"


def chunk_call(
    plan: JobPlan, source: Path, chunk: Chunk, outputs: list[Path], *, threads: int
) -> FfmpegCall:
    """One decode of ``chunk`` into every rung (split + scale + x264)."""
    return FfmpegCall(
        step="encode",
        label=chunk_label(plan, chunk),
        argv=tuple(
            ffargv.chunk_encode_argv(
                source,
                plan.chunks,
                chunk,
                plan.renditions,
                outputs,
                filters=plan.filters,
                spec=plan.preset.video,
                threads=threads,
            )
        ),
        media_seconds=float(plan.chunks.chunk_duration(chunk)),
    )


def audio_call(plan: JobPlan, source: Path, output: Path) -> FfmpegCall:
    """The whole file's audio, once, sample-aligned to the video plan."""
    return FfmpegCall(
        step="audio",
        label="audio",
        argv=tuple(
            ffargv.audio_encode_argv(source, plan.info, plan.chunks, plan.preset.audio, output)
        ),
        media_seconds=float(plan.chunks.duration),
    )


def preview_calls(plan: JobPlan, source: Path, previews_dir: Path) -> list[FfmpegCall]:
    """Poster, thumbnails and sprite in one keyframe-only pass; the GIF from its own window."""
    if plan.previews is None:
        return []
    return [
        FfmpegCall(
            step="previews",
            label="previews",
            argv=tuple(ffargv.previews_argv(source, plan.previews, previews_dir)),
            media_seconds=float(plan.chunks.duration),
        ),
        FfmpegCall(
            step="previews",
            label="gif",
            argv=tuple(ffargv.gif_argv(source, plan.previews, previews_dir / "preview.gif")),
            media_seconds=float(plan.previews.gif_seconds),
        ),
    ]


def write_sprite_vtt(plan: JobPlan, previews_dir: Path) -> None:
    if plan.previews is not None:
        (previews_dir / "sprite.vtt").write_text(render_sprite_vtt(plan.previews), encoding="utf-8")


def package_labels(plan: JobPlan) -> list[str]:
    labels = [f"package {r.name}" for r in plan.renditions]
    if plan.has_audio and plan.preset.packaging.hls:
        labels.append("package audio")
    return labels


def package_calls(
    plan: JobPlan,
    chunks: dict[tuple[int, str], Path],
    audio_file: Path | None,
    stage: Path,
    work: Path,
) -> list[FfmpegCall]:
    """Concat each rung's chunks by stream copy into MP4 (faststart) and CMAF HLS; package the
    audio rendition once. Writes the concat scripts into ``work`` and makes the output folders."""
    packaging = plan.preset.packaging
    calls: list[FfmpegCall] = []
    for r in plan.renditions:
        script = work / f"{r.name}.ffconcat"
        script.write_text(
            ffargv.concat_list(
                plan.chunks, [chunks[(ch.index, r.name)] for ch in plan.chunks.chunks]
            ),
            encoding="utf-8",
        )
        mp4_out = stage / "mp4" / f"{r.name}.mp4" if packaging.mp4 else None
        hls_out = stage / "hls" / r.name / "index.m3u8" if packaging.hls else None
        for target in (mp4_out, hls_out):
            if target is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
        calls.append(
            FfmpegCall(
                step="package",
                label=f"package {r.name}",
                argv=tuple(
                    ffargv.package_rung_argv(
                        script,
                        audio_file,
                        mp4_out=mp4_out,
                        hls_playlist=hls_out,
                        segment_seconds=plan.chunks.segment_seconds,
                    )
                ),
                media_seconds=float(plan.chunks.duration),
            )
        )
    if audio_file is not None and packaging.hls:
        audio_playlist = stage / "hls" / "audio" / "index.m3u8"
        audio_playlist.parent.mkdir(parents=True, exist_ok=True)
        calls.append(
            FfmpegCall(
                step="package",
                label="package audio",
                argv=tuple(
                    ffargv.package_audio_argv(
                        audio_file, audio_playlist, plan.chunks.segment_seconds
                    )
                ),
                media_seconds=float(plan.chunks.duration),
            )
        )
    return calls


def _video_codecs(init_or_mp4: Path) -> str:
    avcc = avcc_record(init_or_mp4.read_bytes())
    if not avcc:
        raise VodforgeError(f"{init_or_mp4.name}: no avcC in the encoded stream")
    return codecs_from_avcc(avcc)


def write_master(stage: Path, plan: JobPlan) -> None:
    """The HLS master playlist, from the packaged media playlists (measured bitrates); media
    playlists get a valid target duration first (see ``fix_target_duration``)."""
    if not plan.preset.packaging.hls:
        return
    hls = stage / "hls"
    # Each playlist parsed once, for both its target duration and its bit rates.
    summaries: dict[str, MediaPlaylistSummary] = {}
    for playlist in hls.glob("*/index.m3u8"):
        text = playlist.read_text(encoding="utf-8")
        summary = summaries[playlist.parent.name] = parse_media_playlist(text)
        fixed = fix_target_duration(text, summary)
        if fixed != text:
            playlist.write_text(fixed, encoding="utf-8")
            summaries[playlist.parent.name] = parse_media_playlist(fixed)
    audio = None
    if plan.has_audio:
        peak, avg = segment_bitrates(hls / "audio" / "index.m3u8", summaries.get("audio"))
        audio = AudioEntry(
            uri="audio/index.m3u8",
            codecs=AAC_LC,
            peak_bps=peak,
            average_bps=avg,
            channels=plan.preset.audio.channels,
        )
    variants = []
    for r in plan.renditions:
        playlist = hls / r.name / "index.m3u8"
        peak, avg = segment_bitrates(playlist, summaries.get(r.name))
        variants.append(
            VariantEntry(
                uri=f"{r.name}/index.m3u8",
                width=r.width,
                height=r.height,
                frame_rate=plan.chunks.rate,
                codecs=_video_codecs(playlist.parent / "init.mp4"),
                peak_bps=peak,
                average_bps=avg,
            )
        )
    (hls / "master.m3u8").write_text(render_master(variants, audio), encoding="utf-8")


def verify_stage(
    stage: Path,
    plan: JobPlan,
    *,
    max_workers: int,
    upstream: Mapping[str, UpstreamDecode] | None = None,
    decode_mp4: bool = False,
) -> VerificationReport:
    """``verify_outputs`` for a job's plan (``decode_mp4``: see there)."""
    packaging = plan.preset.packaging
    return verify_outputs(
        stage,
        rungs=[r.name for r in plan.renditions],
        expected_frames=plan.expected_frames,
        frame_rate=plan.chunks.rate,
        has_audio=plan.has_audio,
        hls=packaging.hls,
        mp4=packaging.mp4,
        max_workers=max_workers,
        upstream=upstream,
        decode_mp4=decode_mp4,
    )


def manifest_head(
    source: dict[str, Any], plan: JobPlan, report: VerificationReport, *, host: str
) -> dict[str, Any]:
    """The part of manifest.json known once verification passed."""
    return {
        "vodforge": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": host,
        "source": {**source, **plan.info.summary()},
        "preset": plan.preset.model_dump(mode="json"),
        "plan": plan.to_dict(),
        "verification": report.to_dict(),
    }
