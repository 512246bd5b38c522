"""The page's plots rendered in worker processes: the same SVG as in-process, a plot's error
raised as it would be in-process, and a dead worker costing nothing but time."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from ble_gateway.web import pages
from ble_gateway.web.daily import patient_days
from ble_gateway.web.plot_workers import PlotJob, PlotWorkers
from ble_gateway.web.review import patient_history
from tests.ble_gateway.web.web_fixtures import PATIENT, clinic


def _page_jobs(tmp_path: Path) -> dict[str, PlotJob]:
    store = clinic(tmp_path, days=40)
    history = patient_history(store.engine, PATIENT.code)
    days = patient_days(store.engine, [d.id for d in history.devices])
    assessed = history.assessed
    jobs = pages._plot_jobs(history, assessed[-1], assessed[0], history.group_names())
    store.close()
    days_jobs = {
        "habitual_svg": (pages.plots_daily.habitual_range_svg, (days,)),
        "load_svg": (pages.plots_daily.load_svg, (days,)),
    }
    return jobs | days_jobs


def _fails(message: str) -> str:
    raise ValueError(message)


def _worker_pid() -> str:
    return str(os.getpid())


def test_workers_render_the_same_svg_as_the_request_process(tmp_path: Path) -> None:
    jobs = _page_jobs(tmp_path)
    assert set(jobs) >= {"trend_svg", "envelope_svg", "forces_svg", "habitual_svg", "load_svg"}
    reference = PlotWorkers(processes=0).render(jobs)
    workers = PlotWorkers(processes=2)
    try:
        side_by_side = workers.render(jobs)
        # the jobs really went to other processes
        pids = workers.render({f"pid{i}": (_worker_pid, ()) for i in range(3)})
    finally:
        workers.close()
    assert list(side_by_side) == list(jobs)  # in the order asked for
    for name, svg in reference.items():
        assert svg.startswith("<svg") and len(svg) > 1000
        assert side_by_side[name] == svg, name
    assert pids["pid0"] == str(os.getpid())
    assert {pids["pid1"], pids["pid2"]} - {str(os.getpid())} == {pids["pid1"], pids["pid2"]}


def test_a_plot_error_in_a_worker_reaches_the_page(tmp_path: Path) -> None:
    workers = PlotWorkers(processes=1)
    try:
        with pytest.raises(ValueError, match="no data for this plot"):
            workers.render({"ok": (_worker_pid, ()), "bad": (_fails, ("no data for this plot",))})
        # the pool survives a plot's own error
        assert len(workers.render({"a": (_worker_pid, ()), "b": (_worker_pid, ())})) == 2
    finally:
        workers.close()


def test_a_dead_worker_costs_time_not_the_page(tmp_path: Path) -> None:
    workers = PlotWorkers(processes=1)
    try:
        first = workers.render({"here": (_worker_pid, ()), "there": (_worker_pid, ())})
        os.kill(int(first["there"]), signal.SIGKILL)
        # the killed worker's share is rendered in the request's process instead
        again = workers.render({"here": (_worker_pid, ()), "there": (_worker_pid, ())})
        assert again["there"] == str(os.getpid())
        # and the next page has workers again
        fresh = workers.render({"here": (_worker_pid, ()), "there": (_worker_pid, ())})
        assert fresh["there"] not in {str(os.getpid()), first["there"]}
    finally:
        workers.close()


def test_negative_processes_are_refused() -> None:
    with pytest.raises(ValueError, match="plot processes must be 0 or more, not -1"):
        PlotWorkers(processes=-1)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that never comes in a container is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_of_a_killed_server_exit_with_it(tmp_path: Path) -> None:
    """SIGKILL gives a server no chance to shut its pool down: its worker and the forkserver
    must still go, not linger as orphans."""
    import subprocess
    import sys
    import time

    script = (
        "import os, sys\n"
        "from ble_gateway.web.plot_workers import PlotWorkers\n"
        "from tests.ble_gateway.web.test_plot_workers import _worker_pid\n"
        "if __name__ == '__main__':\n"
        "    w = PlotWorkers(processes=1)\n"
        "    pids = w.render({'a': (_worker_pid, ()), 'b': (_worker_pid, ())})\n"
        "    print(pids['b'], flush=True)\n"
        "    sys.stdin.read()\n"
    )
    (tmp_path / "server.py").write_text(script)
    root = str(Path(__file__).resolve().parents[3])
    server = subprocess.Popen(
        [sys.executable, str(tmp_path / "server.py")], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, cwd=root, env={**os.environ, "PYTHONPATH": root},
    )  # fmt: skip
    assert server.stdout is not None
    worker = int(server.stdout.readline())
    forkserver = int(Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert _alive(worker) and _alive(forkserver) and worker != server.pid
    server.kill()
    server.wait(timeout=30)
    server.stdin.close()  # type: ignore[union-attr]
    server.stdout.close()
    deadline = time.monotonic() + 30.0
    while (_alive(worker) or _alive(forkserver)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(worker), "the worker outlived its server"
    assert not _alive(forkserver), "the forkserver outlived its server"
