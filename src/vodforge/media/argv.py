"""ffmpeg argument vectors, built from plans (pure: no IO, no ffmpeg).

Argv lists, never shell strings. Every input is a ``file:`` URL opened with a protocol whitelist
(and, for the untrusted source, a demuxer whitelist), so a crafted upload can neither read other
files through a playlist or concat script nor reach the network. The binary itself is prepended by
the runner, which knows the toolchain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from vodforge.media.chunks import Chunk, ChunkPlan
from vodforge.media.ladder import Rendition
from vodforge.media.mediainfo import MediaInfo
from vodforge.media.presets import AudioSpec, VideoSpec
from vodforge.media.previews import PreviewPlan
from vodforge.media.probe import SOURCE_DEMUXERS

INPUT_PROTOCOLS = "file,pipe"
COMMON: tuple[str, ...] = ("-hide_banner", "-nostdin", "-y", "-loglevel", "level+warning")
PROGRESS: tuple[str, ...] = ("-progress", "pipe:1", "-nostats", "-stats_period", "0.5")
#: Output options that keep bytes reproducible: no creation time, no encoder version strings.
BITEXACT: tuple[str, ...] = ("-map_metadata", "-1", "-fflags", "+bitexact")
BITEXACT_VIDEO: tuple[str, ...] = (*BITEXACT, "-flags:v", "+bitexact")
BITEXACT_AUDIO: tuple[str, ...] = (*BITEXACT, "-flags:a", "+bitexact")
#: One thread inside ffmpeg (global filter-graph option; ``-threads`` before ``-i`` for the
#: decoder, after an output's codec options for its encoder): the work is parallel across
#: processes, and threads inside a process that shares its core only add hand-off CPU. The
#: previews and the GIF always run so (on the bench clip, four calls at once: previews
#: 38 -> 28 ms of CPU, GIF 49 -> 43 ms); chunk encodes when they get one x264 thread.
SINGLE_THREAD_GLOBAL: tuple[str, ...] = ("-filter_complex_threads", "1")
SINGLE_THREAD: tuple[str, ...] = ("-threads", "1")


def file_url(path: Path) -> str:
    """A ``file:`` URL: ffmpeg never interprets the path as another protocol or an option."""
    return "file:" + str(Path(path).absolute())


def seconds(value: Fraction) -> str:
    """Seconds with microsecond precision, rounded up (so a seek lands at or after a timestamp)."""
    micros = -(-value * 1_000_000 // 1)
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def source_input(
    source: Path, *, seek: Fraction | None = None, pre: Sequence[str] = ()
) -> list[str]:
    argv = [
        "-protocol_whitelist",
        INPUT_PROTOCOLS,
        "-format_whitelist",
        ",".join(SOURCE_DEMUXERS),
        *pre,
    ]
    if seek is not None and seek > 0:
        argv += ["-ss", seconds(seek)]
    return [*argv, "-i", file_url(source)]


def trusted_input(path: Path, *, fmt: str | None = None) -> list[str]:
    """An intermediate vodforge wrote itself (chunk lists, chunk files, audio)."""
    argv = ["-protocol_whitelist", INPUT_PROTOCOLS]
    if fmt:
        argv += ["-f", fmt]
        if fmt == "concat":
            argv += ["-safe", "0"]
    return [*argv, "-i", file_url(path)]


@dataclass(frozen=True)
class VideoFilters:
    """The per-source part of the video filter graph, before the split into rungs."""

    deinterlace: bool
    scale_flags: str

    @classmethod
    def for_source(cls, info: MediaInfo, spec: VideoSpec) -> VideoFilters:
        interlaced = bool(info.video and info.video.interlaced)
        return cls(deinterlace=interlaced, scale_flags=spec.scale_flags)


def x264_args(r: Rendition, spec: VideoSpec, gop: int) -> list[str]:
    """Encoder settings of one rung; the benchmark's plain-ffmpeg run uses the same list."""
    argv = ["-c:v", "libx264", "-preset", spec.x264_preset, "-profile:v", r.profile]
    if r.level:
        argv += ["-level:v", r.level]
    if spec.tune:
        argv += ["-tune", spec.tune]
    if r.crf is not None:
        argv += ["-crf", str(r.crf)]
    if r.bitrate_kbps is not None:
        argv += ["-b:v", f"{r.bitrate_kbps}k"]
    if r.maxrate_kbps is not None:
        argv += ["-maxrate", f"{r.maxrate_kbps}k"]
    if r.bufsize_kbps is not None:
        argv += ["-bufsize", f"{r.bufsize_kbps}k"]
    return [
        *argv,
        "-g",
        str(gop),
        "-keyint_min",
        str(gop),
        "-sc_threshold",
        "0",
        "-bf",
        str(spec.bframes),
        "-pix_fmt",
        "yuv420p",
    ]


def ladder_filtergraph(
    plan: ChunkPlan,
    renditions: Sequence[Rendition],
    filters: VideoFilters,
    *,
    start_tick: int,
    end_tick: int,
) -> str:
    """Decode once, conform to CFR ticks, cut to [start_tick, end_tick), split, scale per rung."""
    head = "[0:v:0]"
    if filters.deinterlace:
        head += "bwdif=mode=send_frame:parity=auto:deint=all,"
    head += f"fps={plan.rate},trim=start_pts={start_tick}:end_pts={end_tick},setpts=PTS-STARTPTS"
    n = len(renditions)
    if n == 1:
        r = renditions[0]
        return (
            f"{head},scale={r.width}:{r.height}:flags={filters.scale_flags},setsar=1,"
            f"format=yuv420p[v0]"
        )
    labels = "".join(f"[s{i}]" for i in range(n))
    parts = [f"{head},split={n}{labels}"]
    for i, r in enumerate(renditions):
        parts.append(
            f"[s{i}]scale={r.width}:{r.height}:flags={filters.scale_flags},setsar=1,"
            f"format=yuv420p[v{i}]"
        )
    return ";".join(parts)


def chunk_encode_argv(
    source: Path,
    plan: ChunkPlan,
    chunk: Chunk,
    renditions: Sequence[Rendition],
    outputs: Sequence[Path],
    *,
    filters: VideoFilters,
    spec: VideoSpec,
    threads: int = 1,
) -> list[str]:
    """One process per chunk: one decode, every rung encoded from it (video only).

    ``threads`` is x264's per rung; at 1 (chunks parallelise across processes, one per core)
    the decoder and the filter graph run single-threaded too: frame and slice threads inside a
    process that already has a core's worth of work only add CPU (~2-3 % measured).
    """
    graph = ladder_filtergraph(
        plan, renditions, filters, start_tick=chunk.start_tick, end_tick=chunk.end_tick
    )
    single = SINGLE_THREAD if threads == 1 else ()
    argv = [
        *COMMON,
        *PROGRESS,
        *(SINGLE_THREAD_GLOBAL if threads == 1 else ()),
        "-copyts",
        *source_input(source, seek=chunk.seek_seconds, pre=("-noaccurate_seek", *single)),
        "-filter_complex",
        graph,
    ]
    for i, (rendition, out) in enumerate(zip(renditions, outputs, strict=True)):
        argv += [
            "-map",
            f"[v{i}]",
            *x264_args(rendition, spec, plan.gop_frames),
            "-threads",
            str(threads),
            "-fps_mode",
            "passthrough",
            "-an",
            *BITEXACT_VIDEO,
            file_url(out),
        ]
    return argv


def audio_filtergraph(info: MediaInfo, plan: ChunkPlan, spec: AudioSpec) -> str:
    """Cut the source audio to the video's span, start it at the video's first frame (padding
    with silence where the audio starts late), and make it exactly as long as the video."""
    assert info.audio is not None
    start = plan.start_seconds
    end = plan.end_tick / plan.rate
    duration = plan.duration
    delay = max(Fraction(0), info.audio.first_pts - start)
    delay_samples = round(delay * spec.sample_rate)
    parts = [
        f"atrim=start={float(start):.6f}:end={float(end):.6f}",
        f"aresample={spec.sample_rate}",
        f"asetpts=N/{spec.sample_rate}/TB",
    ]
    if delay_samples:
        parts.append(f"adelay=delays={delay_samples}S:all=1")
    parts.append(f"apad=whole_len={round(duration * spec.sample_rate)}")
    parts.append(f"atrim=end_sample={round(duration * spec.sample_rate)}")
    return ",".join(parts)


def audio_encode_argv(
    source: Path, info: MediaInfo, plan: ChunkPlan, spec: AudioSpec, out: Path
) -> list[str]:
    """Audio is encoded once for the whole file: per-chunk AAC would click at every seam."""
    return [
        *COMMON,
        *PROGRESS,
        "-copyts",
        *source_input(source),
        "-map",
        "0:a:0",
        "-vn",
        "-af",
        audio_filtergraph(info, plan, spec),
        "-c:a",
        "aac",
        "-b:a",
        f"{spec.bitrate_kbps}k",
        "-ac",
        str(spec.channels),
        "-ar",
        str(spec.sample_rate),
        *BITEXACT_AUDIO,
        file_url(out),
    ]


def concat_list(plan: ChunkPlan, chunk_files: Sequence[Path]) -> str:
    """An ffconcat script with each chunk's exact duration, so offsets never drift."""
    lines = ["ffconcat version 1.0"]
    for chunk, path in zip(plan.chunks, chunk_files, strict=True):
        escaped = str(Path(path).absolute()).replace("'", "'\\''")
        lines.append(f"file 'file:{escaped}'")
        lines.append(f"duration {seconds(plan.chunk_duration(chunk))}")
    return "\n".join(lines) + "\n"


def _hls_output(playlist: Path, segment_seconds: Fraction) -> list[str]:
    return [
        "-f",
        "hls",
        "-hls_time",
        f"{float(segment_seconds):.6f}",
        "-hls_playlist_type",
        "vod",
        "-hls_segment_type",
        "fmp4",
        "-hls_fmp4_init_filename",
        "init.mp4",
        "-hls_segment_filename",
        file_url(playlist.parent / "seg_%05d.m4s"),
        "-hls_flags",
        "independent_segments",
        file_url(playlist),
    ]


def package_rung_argv(
    concat_script: Path,
    audio: Path | None,
    *,
    mp4_out: Path | None,
    hls_playlist: Path | None,
    segment_seconds: Fraction,
) -> list[str]:
    """Stream-copy the chunks of one rung into its MP4 (faststart, with audio) and its HLS
    media playlist (video only; audio is its own rendition), in one process."""
    argv = [*COMMON, *trusted_input(concat_script, fmt="concat")]
    if audio is not None and mp4_out is not None:
        argv += trusted_input(audio)
    if mp4_out is not None:
        argv += ["-map", "0:v:0"]
        if audio is not None:
            argv += ["-map", "1:a:0"]
        argv += [
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            "-fps_mode",
            "passthrough",
            *BITEXACT,
            file_url(mp4_out),
        ]
    if hls_playlist is not None:
        argv += [
            "-map",
            "0:v:0",
            "-c",
            "copy",
            "-fps_mode",
            "passthrough",
            *_hls_output(hls_playlist, segment_seconds),
        ]
    return argv


def package_audio_argv(audio: Path, hls_playlist: Path, segment_seconds: Fraction) -> list[str]:
    return [
        *COMMON,
        *trusted_input(audio),
        "-map",
        "0:a:0",
        "-c",
        "copy",
        *_hls_output(hls_playlist, segment_seconds),
    ]


def _pick(times: Sequence[Fraction]) -> str:
    """A select expression true for the first frame at or after each time."""
    terms = [f"gte(t,{float(t):.6f})*not(gte(prev_t,{float(t):.6f}))" for t in times]
    return "+".join(terms) if terms else "0"


def previews_argv(source: Path, plan: PreviewPlan, out_dir: Path) -> list[str]:
    """Poster, thumbnails and the sprite sheet from one decode of the source (keyframes only
    when the source's keyframes are dense enough, which costs a fraction of a full decode)."""
    pre = (*SINGLE_THREAD, *(("-skip_frame", "nokey") if plan.mode == "keyframes" else ()))
    deint = ""
    if plan.deinterlace:
        deint = "estdif," if plan.mode == "keyframes" else "bwdif=mode=send_frame:deint=all,"
    branches: list[tuple[str, str, list[str]]] = []
    if plan.poster is not None:
        w, h = plan.poster_size
        branches.append(
            (
                f"select='{_pick([plan.poster])}',scale={w}:{h}:flags=lanczos",
                "poster",
                ["-frames:v", "1", "-update", "1", file_url(out_dir / "poster.jpg")],
            )
        )
    if plan.thumbnails:
        w, h = plan.thumbnail_size
        branches.append(
            (
                f"select='{_pick(plan.thumbnails)}',scale={w}:{h}:flags=lanczos",
                "thumbs",
                [
                    "-frames:v",
                    str(len(plan.thumbnails)),
                    "-start_number",
                    "1",
                    file_url(out_dir / "thumb_%03d.jpg"),
                ],
            )
        )
    if plan.sprite_tiles:
        w, h = plan.tile_size
        branches.append(
            (
                f"select='{_pick(plan.sprite_tiles)}',scale={w}:{h}:flags=bicubic,"
                f"tile={plan.sprite_columns}x{plan.sprite_rows}",
                "sprite",
                ["-frames:v", "1", "-update", "1", file_url(out_dir / "sprite.jpg")],
            )
        )
    n = len(branches)
    head = f"[0:v:0]{deint}"
    if n > 1:
        graph_parts = [head + f"split={n}" + "".join(f"[b{i}]" for i in range(n))]
        sources = [f"[b{i}]" for i in range(n)]
    else:
        graph_parts = []
        sources = [head]
    outputs: list[str] = []
    for src, (chain, label, out_args) in zip(sources, branches, strict=True):
        graph_parts.append(f"{src}{chain},setsar=1,format=yuvj420p[{label}]")
        outputs += [
            "-map",
            f"[{label}]",
            "-fps_mode",
            "passthrough",
            "-q:v",
            "3",
            *SINGLE_THREAD,
            *BITEXACT_VIDEO,
            *out_args,
        ]
    return [
        *COMMON,
        *SINGLE_THREAD_GLOBAL,
        "-copyts",
        *source_input(source, pre=pre),
        "-filter_complex",
        ";".join(graph_parts),
        *outputs,
    ]


def gif_argv(source: Path, plan: PreviewPlan, out: Path) -> list[str]:
    """A small palette-based animated GIF of a few seconds."""
    w, h = plan.gif_size
    deint = "bwdif=mode=send_frame:deint=all," if plan.deinterlace else ""
    graph = (
        f"[0:v:0]{deint}fps={plan.gif_fps},scale={w}:{h}:flags=lanczos,setsar=1,split[a][b];"
        "[a]palettegen=max_colors=128:stats_mode=diff[p];"
        "[b][p]paletteuse=dither=bayer:bayer_scale=5:diff_mode=rectangle[g]"
    )
    # -t on the input, not the output: palettegen waits for its input's EOF, so an output -t
    # would let ffmpeg decode the rest of the source before the GIF could be written.
    return [
        *COMMON,
        *SINGLE_THREAD_GLOBAL,
        *source_input(
            source, seek=plan.gif_seek, pre=(*SINGLE_THREAD, "-t", seconds(plan.gif_seconds))
        ),
        "-filter_complex",
        graph,
        "-map",
        "[g]",
        "-loop",
        "0",
        *SINGLE_THREAD,
        *BITEXACT,
        file_url(out),
    ]
