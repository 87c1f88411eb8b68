"""Progress off a terminal (a Ray job log, a Slurm file): plain lines at a steady interval, and a last one."""
from e2wm.cli import main
from e2wm.progress import Plain


def test_plain_progress_prints_lines_at_the_interval_and_at_the_end(capsys):
    with Plain(every_s=0.0) as bar:
        t = bar.add_task("planning", total=4)
        for _ in range(4):
            bar.advance(t)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("planning: 1/4 (25%)") and lines[-1].startswith("planning: 4/4 (100%)")
    assert len(lines) == 4


def test_plain_progress_is_quiet_between_intervals_but_reports_the_end(capsys):
    with Plain(every_s=3600.0) as bar:
        t = bar.add_task("collecting", total=None)
        bar.update(t, total=10, advance=3)
        assert capsys.readouterr().err == ""
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("collecting: 3/10 (30%)")


def test_a_long_command_off_a_terminal_shows_progress(capsys, monkeypatch):
    monkeypatch.setenv("E2WM_PROGRESS_S", "0")
    assert main(["plan", "--activity", "turn on light", "--simulations", "300"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert any(ln.startswith("MCTS on procedural:") and "/300" in ln for ln in err), err
