"""Error classification, progress parsing, presets, and the runner against tiny fake binaries."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vodforge.errors import (
    ConfigError,
    CorruptInput,
    FfmpegFailed,
    FfmpegKilled,
    FfmpegStalled,
    FfmpegTimeout,
    OutOfDisk,
    ToolchainCrash,
    UnsupportedInput,
)
from vodforge.media.presets import builtin_names, load_preset, parse_preset
from vodforge.media.progress import parse_progress
from vodforge.media.runner import Deadline, FfmpegCall, RecordingRunner, SubprocessRunner
from vodforge.media.signatures import classify
from vodforge.media.toolchain import FileStamp, Toolchain


@pytest.mark.parametrize(
    ("stderr", "error", "label"),
    [
        ("[vost#0:0] Unknown encoder 'libx265'", ToolchainCrash, "unknown_encoder"),
        ("[AVFilterGraph] No such filter: 'bwdif'", ToolchainCrash, "filter_not_found"),
        ("Unrecognized option 'stats_period'.", ToolchainCrash, "option_not_found"),
        ("[mov] moov atom not found\nin.mp4: Invalid data", CorruptInput, "moov_missing"),
        ("in.bin: Invalid data found when processing input", CorruptInput, "invalid_data"),
        ("av_interleaved_write_frame(): No space left on device", OutOfDisk, "out_of_disk"),
        ("Protocol 'http' not on whitelist 'file,pipe'!", UnsupportedInput, "protocol_refused"),
        ("something nobody has seen before", FfmpegFailed, "unclassified"),
    ],
)
def test_classify_stderr(stderr: str, error: type, label: str) -> None:
    verdict = classify(exit_code=1, signal_number=None, stderr=stderr, timed_out=False)
    assert verdict.error is error
    assert verdict.label == label


def test_classify_signals_and_timeout() -> None:
    crash = classify(exit_code=-11, signal_number=signal.SIGSEGV, stderr="", timed_out=False)
    assert crash.error is ToolchainCrash
    killed = classify(exit_code=-9, signal_number=signal.SIGKILL, stderr="", timed_out=False)
    assert killed.error is FfmpegKilled
    assert not killed.error.permanent
    timeout = classify(exit_code=-9, signal_number=signal.SIGKILL, stderr="", timed_out=True)
    assert timeout.error is FfmpegTimeout


def test_parse_progress_blocks() -> None:
    text = [
        "frame=10\n",
        "out_time_us=333333\n",
        "speed=1.5x\n",
        "progress=continue\n",
        "garbage\n",
        "frame=30\n",
        "out_time_us=N/A\n",
        "speed=N/A\n",
        "progress=end\n",
    ]
    blocks = list(parse_progress(text))
    assert [b.frame for b in blocks] == [10, 30]
    assert blocks[0].out_seconds == pytest.approx(0.333333)
    assert blocks[0].speed == 1.5
    assert blocks[1].out_seconds == 0.0
    assert blocks[1].done


class TestPresets:
    def test_builtins_load(self) -> None:
        assert {"default", "mobile", "mp4-only"} <= set(builtin_names())
        for name in builtin_names():
            assert load_preset(name).rungs

    def test_unknown_preset_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match="unknown preset 'nope'"):
            load_preset("nope")

    def test_invalid_values_name_the_field(self) -> None:
        with pytest.raises(ConfigError, match=r"rungs\.0\.crf"):
            parse_preset("[[rungs]]\nheight = 720\ncrf = 99\n", origin="bad.toml")

    def test_rung_needs_rate_control(self) -> None:
        with pytest.raises(ConfigError, match="set crf"):
            parse_preset("[[rungs]]\nheight = 720\n", origin="bad.toml")

    def test_unknown_keys_rejected(self) -> None:
        with pytest.raises(ConfigError, match="colour"):
            parse_preset("colour = 1\n[[rungs]]\nheight = 720\ncrf = 23\n", origin="x.toml")

    def test_bad_toml(self) -> None:
        with pytest.raises(ConfigError, match="not valid TOML"):
            parse_preset("[[rungs", origin="x.toml")

    def test_rungs_sorted_top_first(self) -> None:
        preset = parse_preset(
            "[[rungs]]\nheight = 360\ncrf = 23\n[[rungs]]\nheight = 720\ncrf = 23\n",
            origin="x.toml",
        )
        assert [r.height for r in preset.rungs] == [720, 360]


def fake_ffmpeg(tmp_path: Path, body: str) -> Toolchain:
    """A Python script standing in for ffmpeg, wrapped in a Toolchain without fingerprinting."""
    script = tmp_path / "ffmpeg"
    script.write_text(f"#!{sys.executable}\nimport sys, time, os\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return Toolchain(
        path=script,
        version="fake",
        release="0.0",
        sha256="0" * 64,
        encoders=frozenset(),
        filters=frozenset(),
        stamp=FileStamp.of(script),
        source="test",
    )


def test_runner_success_records_cpu_and_progress(tmp_path: Path) -> None:
    toolchain = fake_ffmpeg(
        tmp_path,
        "print('frame=5\\nout_time_us=500000\\nprogress=continue', flush=True)\n"
        "sum(range(2_000_000))\n"
        "print('frame=10\\nout_time_us=1000000\\nprogress=end', flush=True)\n"
        "sys.stderr.write('done\\n')",
    )
    seen: list[float] = []
    runner = SubprocessRunner(toolchain, check_drift=False)
    record = runner.run(
        FfmpegCall(step="encode", label="c1", argv=("-x",), media_seconds=1.0),
        lambda p: seen.append(p.out_seconds),
    )
    assert record.exit_code == 0
    assert seen == [0.5, 1.0]
    assert record.cpu_seconds > 0
    assert record.argv[1:] == ("-x",)
    assert record.stderr == "done\n"


def test_runner_classifies_failure_with_full_evidence(tmp_path: Path) -> None:
    noise = "\\n".join(f"line {i}" for i in range(40))
    toolchain = fake_ffmpeg(
        tmp_path, f"sys.stderr.write('{noise}\\nUnknown encoder libx264\\n'); sys.exit(8)"
    )
    runner = SubprocessRunner(toolchain, check_drift=False)
    with pytest.raises(ToolchainCrash) as info:
        runner.run(FfmpegCall(step="encode", label="c1", argv=("-y",)))
    evidence = info.value.evidence
    assert evidence is not None
    assert evidence.exit_code == 8
    assert "line 0" in evidence.stderr  # the full stderr is kept, not only the tail
    assert evidence.argv[-1] == "-y"
    assert "Unknown encoder" in str(info.value)
    assert "exit 8" in info.value.one_line()


def test_runner_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    toolchain = fake_ffmpeg(
        tmp_path,
        "import subprocess\n"
        f"p = subprocess.Popen(['sleep', '60'])\nopen({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)",
    )
    runner = SubprocessRunner(
        toolchain, deadline=Deadline(base=1.0, per_media_second=0.0), check_drift=False
    )
    # The fake would exit 0 after 60 s: FfmpegTimeout means the deadline killed it first.
    with pytest.raises(FfmpegTimeout):
        runner.run(FfmpegCall(step="encode", label="c1", argv=()))
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists():
        status = (
            Path(f"/proc/{child}/status").read_text() if Path(f"/proc/{child}").exists() else ""
        )
        if "zombie" in status or "State:\tZ" in status:
            break
        time.sleep(0.05)
    alive = Path(f"/proc/{child}/status")
    assert not alive.exists() or "State:\tZ" in alive.read_text()


def test_runner_kills_a_stalled_call(tmp_path: Path) -> None:
    """Progress once, then silence: killed after the stall window, long before the deadline,
    and reported as a (transient) stall with its stderr."""
    toolchain = fake_ffmpeg(
        tmp_path,
        "print('frame=1\\nout_time_us=100000\\nprogress=continue', flush=True)\n"
        "sys.stderr.write('hung in the decoder\\n'); sys.stderr.flush()\n"
        "time.sleep(60)",
    )
    runner = SubprocessRunner(toolchain, check_drift=False, stall_seconds=0.5)
    # Its deadline (base + 10 media seconds) is minutes away and the fake would exit 0 after
    # 60 s: FfmpegStalled means the stall window killed it.
    with pytest.raises(FfmpegStalled) as info:
        runner.run(FfmpegCall(step="encode", label="c1", argv=(), media_seconds=10.0))
    assert info.value.permanent is False
    assert info.value.evidence is not None
    assert "hung in the decoder" in info.value.evidence.stderr


def test_runner_keeps_a_slow_call_that_progresses(tmp_path: Path) -> None:
    toolchain = fake_ffmpeg(
        tmp_path,
        "for i in range(6):\n"
        "    print(f'frame={i}\\nout_time_us={i * 100000}\\nprogress=continue', flush=True)\n"
        "    time.sleep(0.2)\n"
        "print('progress=end', flush=True)",
    )
    runner = SubprocessRunner(toolchain, check_drift=False, stall_seconds=0.6)
    record = runner.run(FfmpegCall(step="encode", label="c1", argv=(), media_seconds=1.0))
    assert record.exit_code == 0


def test_runner_reads_both_pipes_without_deadlock(tmp_path: Path) -> None:
    """Far more stderr than a pipe holds, interleaved with progress, and \\r line ends: every
    byte is kept (as text mode's universal newlines would give it) and every block is seen."""
    toolchain = fake_ffmpeg(
        tmp_path,
        "for i in range(50):\n"
        "    sys.stderr.write(f'noise {i} ' + 'x' * 4000 + '\\r\\n'); sys.stderr.flush()\n"
        "    print(f'frame={i}\\nout_time_us={i * 20000}\\nprogress=continue', flush=True)\n"
        "sys.stderr.write('frame=  50 fps=0.0\\rlast line\\n')\n"
        "print('progress=end', flush=True)",
    )
    seen: list[int] = []
    record = SubprocessRunner(toolchain, check_drift=False).run(
        FfmpegCall(step="encode", label="c1", argv=(), media_seconds=1.0),
        lambda p: seen.append(p.frame),
    )
    lines = record.stderr.split("\n")
    assert len(seen) == 51
    assert seen[:50] == list(range(50))
    assert [line.split()[1] for line in lines[:50]] == [str(i) for i in range(50)]
    assert all(len(line) == len(f"noise {i} ") + 4000 for i, line in enumerate(lines[:50]))
    assert lines[50:] == ["frame=  50 fps=0.0", "last line", ""]


def test_runner_kills_the_call_when_the_progress_callback_fails(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    toolchain = fake_ffmpeg(
        tmp_path,
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "print('frame=1\\nout_time_us=1\\nprogress=continue', flush=True)\n"
        "time.sleep(60)",
    )

    def explode(progress: object) -> None:
        raise RuntimeError("observer broke")

    with pytest.raises(RuntimeError, match="observer broke"):
        SubprocessRunner(toolchain, check_drift=False).run(
            FfmpegCall(step="encode", label="c1", argv=(), media_seconds=1.0), explode
        )
    # Killed and reaped by the runner, not left running for its 60 s.
    assert not Path(f"/proc/{int(pidfile.read_text())}").exists()


def test_die_with_parent_sets_pdeathsig_and_keeps_the_argv(tmp_path: Path) -> None:
    """The child learns to die with its worker (PR_SET_PDEATHSIG = SIGKILL); the recorded argv
    is ffmpeg's own, whatever launcher set the signal."""
    toolchain = fake_ffmpeg(
        tmp_path,
        "import ctypes\n"
        "sig = ctypes.c_int(0)\n"
        "ctypes.CDLL(None).prctl(2, ctypes.byref(sig))\n"  # PR_GET_PDEATHSIG
        "sys.stderr.write(f'pdeathsig={sig.value}\\n')",
    )
    record = SubprocessRunner(toolchain, check_drift=False, die_with_parent=True).run(
        FfmpegCall(step="encode", label="c1", argv=("-x",))
    )
    assert f"pdeathsig={int(signal.SIGKILL)}" in record.stderr
    assert record.argv == (str(toolchain.path), "-x")
    plain = SubprocessRunner(toolchain, check_drift=False).run(
        FfmpegCall(step="encode", label="c1", argv=("-x",))
    )
    assert "pdeathsig=0" in plain.stderr


def test_recording_runner_fake() -> None:
    runner = RecordingRunner()
    runner.run(FfmpegCall(step="encode", label="a", argv=("-i", "x")))
    assert [c.label for c in runner.calls] == ["a"]


HELPER = Path(sys.executable).parent / "vodforge-pdeathsig"
needs_helper = pytest.mark.skipif(
    not os.access(HELPER, os.X_OK), reason="vodforge-pdeathsig not built (no C compiler)"
)


@needs_helper
def test_spawn_helper_refuses_when_its_parent_is_not_the_one_named() -> None:
    out = subprocess.run(
        [str(HELPER), "1234567", "/bin/echo", "ran"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 127
    assert out.stdout == ""
    assert "parent 1234567 is gone" in out.stderr


@needs_helper
def test_spawn_helper_execs_in_place_and_reports_a_missing_program(tmp_path: Path) -> None:
    me = str(os.getpid())
    ok = subprocess.run(
        [str(HELPER), me, "/bin/echo", "a  b", "c"], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0
    assert ok.stdout == "a  b c\n"  # arguments passed through untouched
    missing = subprocess.run(
        [str(HELPER), me, str(tmp_path / "nope")], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 127
    assert "No such file or directory" in missing.stderr


def test_runner_uses_the_spawn_helper_when_built(tmp_path: Path) -> None:
    toolchain = fake_ffmpeg(tmp_path, "sys.stderr.write(f'ppid={os.getppid()}\\n')")
    record = SubprocessRunner(toolchain, check_drift=False, die_with_parent=True).run(
        FfmpegCall(step="encode", label="c1", argv=())
    )
    # exec in place: the fake's parent is this process, whichever launcher set the signal
    assert f"ppid={os.getpid()}" in record.stderr
