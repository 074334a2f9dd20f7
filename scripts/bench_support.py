"""What the measuring scripts share (imported from `scripts/`; no third-party
packages, so it serves the venv's python and the system's alike)."""

import json
import os
import re
import shutil
import subprocess
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def library_policy(work):
    """A copy of the shipped library under `work` with its rate limits and
    working hours out of reach, as `benches/common/mod.rs` makes it: the
    calls after the 30th would be refusals, and a call at night held."""
    policy = os.path.join(work, "library")
    os.makedirs(policy)
    for name in os.listdir(os.path.join(ROOT, "policies")):
        if name.endswith((".rego", ".json")) and not name.endswith("_test.rego"):
            shutil.copy(os.path.join(ROOT, "policies", name), policy)
    path = os.path.join(policy, "data.json")
    with open(path) as f:
        data = json.load(f)
    big = 10**9
    data["mcp_firewall"]["ratelimit"] = {
        "per_tool_per_minute": big, "per_tool_per_hour": big, "per_principal_per_minute": big}
    data["mcp_firewall"]["timewindow"] = {
        "days": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
        "start_hour": 0, "end_hour": 24}
    with open(path, "w") as f:
        json.dump(data, f)
    return policy


def start_http(cmd, on_line=None):
    """Start an HTTP firewall (`cmd` includes `--listen 127.0.0.1:0`): the
    process and its `/mcp` URL, read from its log; `None` for the URL when
    it exited before listening. Its stderr is drained from then on (each
    line handed to `on_line`, when given): a full pipe stalled the logging
    of builds before the log queue (2026-12-07). With `--metrics-listen`,
    `fw.metrics_url` is the metrics listener's URL."""
    fw = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    url = None
    fw.metrics_url = None
    for line in fw.stderr:
        m = re.search(rb"metrics on (http://\S+)", line)
        if m:
            fw.metrics_url = m.group(1).decode()
        m = re.search(rb"listening on (http://\S+)", line)
        if m:
            url = m.group(1).decode() + "/mcp"
            break
    threading.Thread(target=lambda: [on_line and on_line(line) for line in fw.stderr],
                     daemon=True).start()
    return fw, url


def resident(pid):
    """VmRSS and VmHWM of `pid`, in kB."""
    with open(f"/proc/{pid}/status") as f:
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f)
                if k in ("VmRSS", "VmHWM")}


def firewall_cpu(pid):
    """CPU seconds (user + system) the process `pid` has used, all its
    threads together."""
    ticks = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
