"""`rediswq dashboard` without a browser: what reaches the page, who may act, what one cycle costs.

The real command runs as a subprocess against a private Redis with a password; the shared-cache test
runs the server in this process to count its read cycles. tests/test_dashboard_browser.py drives it
from Chromium.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from helpers_dashboard import TOKEN, RunningDashboard
from redis_server import RedisServer

import rediswq
from rediswq_producer.dashboard.actions import Guard, Refused
from rediswq_producer.dashboard.board import Board
from rediswq_producer.dashboard.reader import Reader
from rediswq_producer.dashboard.server import Dashboard, serve

PASSWORD = "dash-Pa55word-never-shown"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer(password=PASSWORD)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def dash(server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDashboard]:
    q = rediswq.Queue.from_url(server.url, "dash-dead", max_attempts=1)
    for i in range(3):
        q.put(f"item {i}")
        q.fail(q.lease(30), f"error number {i}", retry=False)  # type: ignore[arg-type]
    running = RunningDashboard(server.url, tmp_path_factory.mktemp("dash") / "log")
    running.wait_for("/api/queues", lambda d: any(r["name"] == "dash-dead" for r in d["queues"]))
    yield running
    running.stop()


def dead_count(server: RedisServer) -> int:
    return rediswq.Queue(server.client(), "dash-dead").stats().dead


def test_a_plain_post_without_token_or_page_token_is_refused_and_moves_nothing(
    dash: RunningDashboard, server: RedisServer
) -> None:
    before = dead_count(server)
    status, body = dash.post(b'{"action": "requeue", "queue": "dash-dead"}', {})
    assert status == 403, body
    form = b"action=requeue&queue=dash-dead"
    status, _ = dash.post(form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403
    assert dead_count(server) == before


def test_a_post_with_the_page_token_but_without_the_action_token_is_refused(
    dash: RunningDashboard, server: RedisServer
) -> None:
    headers = {"Content-Type": "application/json", "X-Rediswq-Csrf": dash.csrf()}
    status, body = dash.post(b'{"action": "purge", "queue": "dash-dead"}', headers)
    assert status == 403 and b"action token" in body
    wrong = {**headers, "X-Rediswq-Token": "x" * 20}
    status, _ = dash.post(b'{"action": "purge", "queue": "dash-dead"}', wrong)
    assert status == 403
    assert dead_count(server) > 0


def test_a_request_from_another_origin_is_refused_even_with_both_tokens(
    dash: RunningDashboard, server: RedisServer
) -> None:
    before = dead_count(server)
    headers = {
        "Content-Type": "application/json",
        "X-Rediswq-Csrf": dash.csrf(),
        "X-Rediswq-Token": TOKEN,
        "Origin": "http://evil.example",
    }
    status, body = dash.post(b'{"action": "purge", "queue": "dash-dead"}', headers)
    assert status == 403 and b"cross-origin" in body
    assert dead_count(server) == before


def test_an_allowed_action_moves_the_item_and_is_logged_without_the_token(
    dash: RunningDashboard, server: RedisServer
) -> None:
    letters = dash.json("/api/queue?name=dash-dead")["dead_letters"]
    headers = {"Content-Type": "application/json", "X-Rediswq-Csrf": dash.csrf(), "X-Rediswq-Token": TOKEN}
    body = json.dumps({"action": "requeue", "queue": "dash-dead", "ids": [letters[0]["id"]]}).encode()
    status, reply = dash.post(body, headers)
    assert status == 200, reply
    stats = rediswq.Queue(server.client(), "dash-dead").stats()
    assert (stats.dead, stats.pending) == (len(letters) - 1, 1)
    log = dash.log.read_text()
    assert f"requeue queue='dash-dead' ids='{letters[0]['id']}' from 127.0.0.1" in log
    assert TOKEN not in log and PASSWORD not in log


def test_the_page_and_its_json_never_show_the_url_or_its_password(dash: RunningDashboard) -> None:
    for path in ("/", "/queue?name=dash-dead", "/static/app.js", "/static/app.css", "/api/queues"):
        status, body = dash.get(path)
        assert status == 200
        assert PASSWORD.encode() not in body and b"redis://" not in body, path
    detail = dash.json("/api/queue?name=dash-dead")
    assert "error number" in json.dumps(detail)
    assert PASSWORD not in dash.log.read_text()


def test_a_redis_that_goes_away_is_shown_as_a_redacted_error(tmp_path: Path) -> None:
    own = RedisServer(password=PASSWORD)
    rediswq.Queue.from_url(own.url, "gone").put("x")
    running = RunningDashboard(own.url, tmp_path / "log", actions=False)
    try:
        own.stop()
        data = running.wait_for("/api/queues", lambda d: d["error"], secs=60)
        assert data["error"], "no error shown after Redis stopped"
        assert PASSWORD not in json.dumps(data) and "Redis" in data["error"]
        assert [q["name"] for q in data["queues"]] == ["gone"]  # the last numbers stay
    finally:
        running.stop()


def test_actions_are_refused_when_the_dashboard_was_started_without_them() -> None:
    with pytest.raises(Refused, match="--allow-actions"):
        Guard(None).check({"X-Rediswq-Token": TOKEN})


def test_every_page_and_tab_reads_the_same_cycle_and_never_redis_itself(
    client: redis.Redis, queue: rediswq.Queue
) -> None:
    queue.put("x")
    reader = Reader(lambda: client, lambda c, name: rediswq.Queue(c, name), [queue.name])
    board = Board(reader, interval_secs=60)
    board.refresh()
    dashboard = Dashboard(("127.0.0.1", 0), board, Guard(None), lambda line: None)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(dashboard, stop), daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{dashboard.server_address[1]}"
        cycles = board.cycles  # the serve thread's first cycle, plus ours
        bodies = {urllib.request.urlopen(f"{base}/api/queues", timeout=10).read() for _ in range(40)}
        assert board.cycles <= cycles + 1  # one the serve thread may still be running; none per request
        assert len(bodies) <= 2
        assert json.loads(bodies.pop())["queues"][0]["pending"] == 1
    finally:
        stop.set()
        thread.join(10)


def test_a_host_name_other_than_this_machine_is_refused_on_a_loopback_dashboard(
    client: redis.Redis, queue: rediswq.Queue
) -> None:
    reader = Reader(lambda: client, lambda c, name: rediswq.Queue(c, name), [queue.name])
    dashboard = Dashboard(("127.0.0.1", 0), Board(reader, 60), Guard(None), lambda line: None)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(dashboard, stop), daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{dashboard.server_address[1]}"
        rebound = urllib.request.Request(f"{base}/api/queues", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rebound, timeout=10)
        assert refused.value.code == 403
        assert urllib.request.urlopen(f"{base}/healthz", timeout=10).status == 200
    finally:
        stop.set()
        thread.join(10)
