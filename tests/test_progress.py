"""Progress: what xdist workers publish, and the line the controller's board makes of it."""

import io
import json
import time as time_module
import types

from swiglu_audit.training.progress import Progress, ProgressBoard, read_states, render, time_left


def test_a_worker_publishes_its_state_whole(tmp_path, monkeypatch):
    from swiglu_audit.training import progress as progress_module

    # a still monotonic clock: the throttle below must not depend on how fast this machine runs
    monkeypatch.setattr(progress_module, "time", types.SimpleNamespace(monotonic=lambda: 100.0, time=time_module.time))
    channel = tmp_path / "gw1.json"
    progress = Progress(channel=channel)
    progress.update("prefetch swiglu-vit", 2, 5)
    state = json.loads(channel.read_text())
    assert state["message"] == "prefetch swiglu-vit" and (state["done"], state["total"]) == (2, 5)
    progress.update("training swiglu-vit seed 1 (clean)")  # within 200 ms: throttled
    assert json.loads(channel.read_text())["message"] == "prefetch swiglu-vit"
    progress.update("prefetch done", 5, 5)  # the last item is never throttled away
    assert json.loads(channel.read_text())["done"] == 5
    assert not list(tmp_path.glob("*.tmp"))
    assert read_states(tmp_path) == {"gw1": json.loads(channel.read_text())}


def test_the_board_line_names_each_worker_and_the_time_left():
    started = 1000.0
    states = {"gw0": {"message": "training relu-vit seed 1 (clean)", "done": 2, "total": 5, "started": started},
              "gw1": {"message": "prefetch gelu-mlp", "done": 1, "total": 4, "started": started}}
    line = render(states, started, started + 60)
    # gw0: 30 s an item, 3 left = 90 s; gw1: 60 s an item, 3 left = 180 s; the slowest decides
    assert line == ("[swiglu-audit] 1:00 | gw0 2/5 training relu-vit seed 1 (clean) | gw1 1/4 prefetch gelu-mlp"
                    " | about 3:00 left")
    assert time_left({"done": 0, "total": 4, "started": started}, started + 5) is None
    assert "left" not in render({**states, "gw2": {"message": "x", "done": 0, "total": 3, "started": started}},
                                started, started + 60)  # no estimate until every worker has one
    assert time_left({"done": 4, "total": 4, "started": started}, started + 5) == 0.0


def test_the_board_writes_a_line_every_interval_in_a_log(tmp_path):
    stream = io.StringIO()
    board = ProgressBoard(tmp_path, stream, tty=False, interval=0.1)
    Progress(channel=tmp_path / "gw0.json").update("prefetch swiglu-mlp", 0, 2)
    board.start()
    import time
    deadline = time.monotonic() + 20  # two lines, however slowly a busy machine runs the board's thread
    while time.monotonic() < deadline and len([line for line in stream.getvalue().splitlines() if line]) < 2:
        time.sleep(0.1)
    board.stop()
    lines = [line for line in stream.getvalue().splitlines() if line]
    assert len(lines) >= 2 and all("gw0 0/2 prefetch swiglu-mlp" in line for line in lines)
    board.remove_folder()
    assert not tmp_path.exists()
