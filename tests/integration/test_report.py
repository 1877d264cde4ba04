"""The inspection report (lib/report.c, `weibaoctl report`): an agent with a
fault firing renders its report; headless Chromium from Debian draws it (the
screenshot is kept as build/test-artifacts/report.png) and its DOM holds the
host name, the charts and the fault's title. Chromium runs with no network:
every flag that makes it call home is off, and the page loads nothing."""

import json
import os
import re
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import ROOT, require_root, require_tool, wait_until
from test_snapshot import LedgerAgent
from test_snmptrap import LINK_DOWN, link_key, link_varbinds, v2c_args

ARTIFACTS = os.path.join(ROOT, "build", "test-artifacts")
CHROMIUM = "/usr/bin/chromium"


def chromium(*args):
    with tempfile.TemporaryDirectory(prefix="weibao-chromium-") as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--user-data-dir=" + profile, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": profile})


@pytest.fixture
def ragent(stub, tmp_path):
    require_tool("snmptrap", "snmp")
    require_tool("chromium", "chromium")
    a = LedgerAgent(str(tmp_path / "agent"), stub)
    yield a
    a.stop()


def test_report_of_a_host_with_a_fault_renders_in_chromium(ragent, stub, tmp_path):
    ragent.start()
    ragent.trap(*v2c_args(), ["", LINK_DOWN, *link_varbinds(3)])
    cases = stub.wait_for(lambda: stub.cases(), 10)
    snap = ragent.snapshot("--since", "7d")
    fault = [f for f in snap["faults"] if f["key"] == link_key(3)]
    assert fault and fault[0]["state"] == "firing", snap["faults"]
    title = fault[0]["title"]

    r = ragent.ctl("report", "--since", "7d")
    assert r.returncode == 0, r.stderr
    html = r.stdout
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html and "src=" not in html and "href=" not in html
    page = tmp_path / "report.html"
    page.write_text(html)
    bad = ragent.ctl("report", "--minutes")
    assert bad.returncode == 2 and "unexpected" in bad.stderr

    os.makedirs(ARTIFACTS, exist_ok=True)
    png = os.path.join(ARTIFACTS, "report.png")
    if os.path.exists(png):
        os.unlink(png)
    shot = chromium("--screenshot=" + png, "--window-size=1280,4000", "file://" + str(page))
    assert os.path.exists(png), shot.stderr[-2000:]
    with open(png, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20000, len(data)  # text and charts, not a blank page

    dom = chromium("--dump-dom", "file://" + str(page))
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert socket.gethostname() == snap["agent"]["hostname"]
    assert "<h2>%s</h2>" % snap["agent"]["hostname"] in text
    assert snap["agent"]["id"] in text
    # outages and faults over time; this agent has no sensors or heartbeat
    assert len(re.findall(r"<svg\b", text)) == 2, text[:2000]
    assert 'class="firing"' in text  # the fault's moment on the chart
    esc = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert esc in text, title
    assert cases[0]["title"] == title  # the same fault the central side holds as a case


def test_report_charts_the_temperatures_of_a_sensor_host(stub, tmp_path):
    require_root()
    require_tool("chromium", "chromium")
    from test_agent import Agent, LABEL  # the sensor agent on a fake hwmon tree

    a = Agent(str(tmp_path / "agent"), stub.url, stub.token_file)
    try:
        a.start()
        for c in (50.0, 58.0, 53.0):
            a.hw.set_temp("testcpu", 1, c)
            time.sleep(1.2)
        wait_until(lambda: any(s["source"] == "sensor" for s in
                               json.loads(a.ctl("snapshot", "--since", "1h").stdout)["history"]["series"]), 5)
        r = a.ctl("report", "--since", "1h")
        assert r.returncode == 0, r.stderr
    finally:
        a.stop()
    page = tmp_path / "report.html"
    page.write_text(r.stdout)
    os.makedirs(ARTIFACTS, exist_ok=True)
    png = os.path.join(ARTIFACTS, "report-sensors.png")
    if os.path.exists(png):
        os.unlink(png)
    chromium("--screenshot=" + png, "--window-size=1280,2400", "file://" + str(page))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    dom = chromium("--dump-dom", "file://" + str(page)).stdout
    # a temperature chart with a line of readings, named after the sensor
    assert "Temperature" in dom and LABEL in dom, dom[:3000]
    assert re.search(r'<polyline class="avg" points="[0-9.]+,[0-9.]+', dom), dom[:3000]
    assert len(re.findall(r"<svg\b", dom)) >= 3
