"""Argv building and preview planning: pure, no ffmpeg."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from tests.unit.factories import media_info, video_info
from vodforge.media import argv as ffargv
from vodforge.media.plan import plan_job
from vodforge.media.presets import PreviewSpec, load_preset
from vodforge.media.previews import plan_previews, render_sprite_vtt

SRC = Path("/data/in put's.mov")


def job(**kw: object) -> object:
    return plan_job(media_info(video_info(**kw)), load_preset("default"), workers=2)  # type: ignore[arg-type]


def test_source_input_is_a_whitelisted_file_url() -> None:
    argv = ffargv.source_input(SRC, seek=Fraction(8))
    assert argv[-2:] == ["-i", "file:/data/in put's.mov"]
    assert argv[argv.index("-protocol_whitelist") + 1] == "file,pipe"
    demuxers = argv[argv.index("-format_whitelist") + 1].split(",")
    assert "mov" in demuxers
    assert "hls" not in demuxers
    assert "concat" not in demuxers
    assert argv[argv.index("-ss") + 1] == "8.000000"


def test_seconds_rounds_up_to_microseconds() -> None:
    assert ffargv.seconds(Fraction(1, 3)) == "0.333334"
    assert ffargv.seconds(Fraction(8)) == "8.000000"


def test_chunk_argv_decodes_once_and_encodes_every_rung() -> None:
    plan = job()
    chunk = plan.chunks.chunks[1]  # type: ignore[attr-defined]
    outs = [Path(f"/w/{r.name}.mp4") for r in plan.renditions]  # type: ignore[attr-defined]
    argv = ffargv.chunk_encode_argv(
        SRC,
        plan.chunks,  # type: ignore[attr-defined]
        chunk,
        plan.renditions,  # type: ignore[attr-defined]
        outs,
        filters=plan.filters,  # type: ignore[attr-defined]
        spec=plan.preset.video,  # type: ignore[attr-defined]
    )
    assert argv.count("-i") == 1
    graph = argv[argv.index("-filter_complex") + 1]
    assert f"trim=start_pts={chunk.start_tick}:end_pts={chunk.end_tick}" in graph
    assert "fps=30" in graph
    assert "split=4" in graph
    assert "scale=1280:720" in graph
    assert argv.count("libx264") == 4
    assert argv[argv.index("-g") + 1] == str(plan.chunks.gop_frames)  # type: ignore[attr-defined]
    assert argv[argv.index("-sc_threshold") + 1] == "0"
    assert "-copyts" in argv
    assert "-noaccurate_seek" in argv
    assert argv[-1] == "file:/w/360p.mp4"
    assert all(isinstance(a, str) for a in argv)


def test_interlaced_source_is_deinterlaced_before_fps() -> None:
    plan = job(interlaced=True)
    graph = ffargv.ladder_filtergraph(
        plan.chunks,  # type: ignore[attr-defined]
        plan.renditions,  # type: ignore[attr-defined]
        plan.filters,  # type: ignore[attr-defined]
        start_tick=0,
        end_tick=10,
    )
    assert graph.index("bwdif") < graph.index("fps=")


def test_audio_is_cut_to_video_span_and_delayed_when_late() -> None:
    plan = plan_job(media_info(audio_first=Fraction(1, 10)), load_preset("default"), workers=2)
    graph = ffargv.audio_filtergraph(plan.info, plan.chunks, plan.preset.audio)
    assert graph.startswith("atrim=start=0.000000:end=30.000000")
    assert "adelay=delays=4800S:all=1" in graph
    assert graph.endswith(f"atrim=end_sample={30 * 48000}")


def test_concat_list_carries_exact_durations_and_quotes() -> None:
    plan = job()
    files = [Path(f"/w/it's {i}.mp4") for i in range(len(plan.chunks.chunks))]  # type: ignore[attr-defined]
    script = ffargv.concat_list(plan.chunks, files)  # type: ignore[attr-defined]
    assert script.startswith("ffconcat version 1.0\n")
    assert "file 'file:/w/it'\\''s 0.mp4'" in script
    durations = [line.split()[1] for line in script.splitlines() if line.startswith("duration")]
    total = sum(Fraction(d) for d in durations)
    assert total == 30


def test_package_argv_mp4_faststart_and_cmaf_hls() -> None:
    argv = ffargv.package_rung_argv(
        Path("/w/720p.ffconcat"),
        Path("/w/audio.m4a"),
        mp4_out=Path("/o/mp4/720p.mp4"),
        hls_playlist=Path("/o/hls/720p/index.m3u8"),
        segment_seconds=Fraction(4),
    )
    assert argv[argv.index("-f") + 1] == "concat"
    assert "+faststart" in argv
    assert argv[argv.index("-hls_segment_type") + 1] == "fmp4"
    assert argv[argv.index("-hls_time") + 1] == "4.000000"
    assert argv[-1] == "file:/o/hls/720p/index.m3u8"
    assert "-c" in argv
    assert "libx264" not in argv  # stream copy only


class TestPreviews:
    def test_dense_keyframes_use_keyframe_mode_snapped_to_keyframes(self) -> None:
        info = media_info()
        plan = plan_previews(info, PreviewSpec(), output_start=Fraction(0))
        assert plan.mode == "keyframes"
        assert len(plan.thumbnails) == 5
        # selection targets sit just before a keyframe (every 2 s)
        for t in (*plan.thumbnails, *plan.sprite_tiles):
            assert (t + Fraction(1, 2000)) % 2 == 0
        assert plan.poster_size == (1280, 720)
        assert plan.thumbnail_size == (320, 180)

    def test_sparse_keyframes_decode_every_frame(self) -> None:
        info = media_info(video_info(gop=None))
        plan = plan_previews(info, PreviewSpec(), output_start=Fraction(0))
        assert plan.mode == "frames"
        assert plan.thumbnails == tuple(Fraction(3 + 6 * i) for i in range(5))
        assert len(plan.sprite_tiles) == 15

    def test_fewer_keyframes_than_thumbnails_decode_every_frame(self) -> None:
        # 3 s with a keyframe every 2 s: two keyframes for three thumbnails.
        info = media_info(video_info(frames=90, gop=60))
        plan = plan_previews(info, PreviewSpec(thumbnails=3), output_start=Fraction(0))
        assert plan.mode == "frames"
        assert plan.thumbnails == (Fraction(1, 2), Fraction(3, 2), Fraction(5, 2))

    def test_sprite_vtt_cues_cover_the_video(self) -> None:
        info = media_info()
        plan = plan_previews(info, PreviewSpec(sprite_columns=4), output_start=Fraction(0))
        vtt = render_sprite_vtt(plan)
        lines = vtt.splitlines()
        assert lines[0] == "WEBVTT"
        cues = [line for line in lines if "-->" in line]
        assert cues[0].startswith("00:00:00.000 --> ")
        assert cues[-1].endswith("--> 00:00:30.000")
        assert "sprite.jpg#xywh=0,90,160,90" in vtt  # 5th tile: row 1, column 0
        assert plan.sprite_rows == 4

    def test_portrait_previews(self) -> None:
        info = media_info(video_info(rotation=90))
        plan = plan_previews(info, PreviewSpec(), output_start=Fraction(0))
        w, h = plan.poster_size
        assert h > w

    def test_previews_argv_uses_keyframe_decoding(self) -> None:
        info = media_info()
        plan = plan_previews(info, PreviewSpec(), output_start=Fraction(0))
        argv = ffargv.previews_argv(SRC, plan, Path("/o/previews"))
        assert argv[argv.index("-skip_frame") + 1] == "nokey"
        assert argv.index("-skip_frame") < argv.index("-i")
        assert "file:/o/previews/thumb_%03d.jpg" in argv
        graph = argv[argv.index("-filter_complex") + 1]
        assert "tile=10x2" in graph

    def test_previews_and_gif_run_single_threaded(self) -> None:
        info = media_info()
        plan = plan_previews(info, PreviewSpec(), output_start=Fraction(0))
        for argv in (
            ffargv.previews_argv(SRC, plan, Path("/o/previews")),
            ffargv.gif_argv(SRC, plan, Path("/o/previews/preview.gif")),
        ):
            assert argv[argv.index("-filter_complex_threads") + 1] == "1"
            inputs = [i for i, a in enumerate(argv) if a == "-i"]
            outputs = [
                i for i, a in enumerate(argv) if a.startswith("file:/o/") and i - 1 not in inputs
            ]
            assert len(inputs) == 1
            assert outputs
            # the decoder's -threads sits before -i, each encoder's after the previous output
            bounds = [inputs[0], *outputs]
            for start, end in zip([0, *bounds], bounds, strict=False):
                assert "-threads" in argv[start:end], argv[start:end]
                assert argv[argv.index("-threads", start) + 1] == "1"

    def test_gif_reads_only_its_window(self) -> None:
        info = media_info()
        plan = plan_previews(info, PreviewSpec(), output_start=Fraction(0))
        argv = ffargv.gif_argv(SRC, plan, Path("/o/previews/preview.gif"))
        # -t before -i: the input stops, so palettegen sees EOF after the window
        assert argv.index("-t") < argv.index("-i")
        assert "palettegen" in argv[argv.index("-filter_complex") + 1]
