#!/usr/bin/env python3
"""Regenerate the seed corpora under fuzz/corpus/ from the repository's own
test inputs: the JSON-RPC cases of src/jsonrpc.rs, the policy cases in
tests/cases/*.json (as tools/call lines and audit bodies), and the config
examples of README.md and the tests. Run from the repository root:
`python3 fuzz/make_seeds.py`. Entries found by fuzzing are added by hand
under descriptive names and are not touched here (only `seed-*` files are
rewritten)."""
import glob, json, os, re, base64, hmac, hashlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(C, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def reset(target):
    d = os.path.join(C, target)
    for p in glob.glob(os.path.join(d, "seed-*")):
        os.remove(p)


for t in ["jsonrpc", "framing", "config", "signing", "audit"]:
    reset(t)

# ---- jsonrpc: one message per line ----
src = open(os.path.join(ROOT, "src/jsonrpc.rs")).read()
lines = []
for m in re.finditer(r'r#"(.*?)"#', src):
    lines.append(m.group(1))
for m in re.finditer(r'\("(\{not json|\[\]|42)"', src):
    lines.append(m.group(1))
for i, l in enumerate(lines):
    put("jsonrpc", f"unit-{i:02}.jsonl", l + "\n")

init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "harness", "version": "1.0"}}}
session = [init,
           {"jsonrpc": "2.0", "method": "notifications/initialized"},
           {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}},
           {"jsonrpc": "2.0", "id": "s-3", "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hello"}}},
           {"jsonrpc": "2.0", "id": 4, "method": "resources/read",
            "params": {"uri": "fixture://notes/hello"}},
           {"jsonrpc": "2.0", "id": 5, "method": "prompts/get",
            "params": {"name": "greet", "arguments": {"name": "Ada"}}},
           {"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 5, "reason": "x"}},
           {"jsonrpc": "2.0", "id": "fw-1", "result": {"action": "accept"}},
           {"jsonrpc": "2.0", "id": "fw-2", "error": {"code": -1, "message": "no"}},
           {"jsonrpc": "2.0", "id": 18446744073709551615, "method": "ping"},
           {"jsonrpc": "2.0", "id": -9223372036854775808, "method": "ping"}]
put("jsonrpc", "session.jsonl", "".join(json.dumps(m) + "\n" for m in session))
for path in sorted(glob.glob(os.path.join(ROOT, "tests/cases/*.json"))):
    case = json.load(open(path))
    inp = case.get("input", {})
    if inp.get("method") == "tools/call":
        msg = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": inp.get("tool", {}).get("name", "x"),
                          "arguments": inp.get("arguments", {})}}
    else:
        msg = {"jsonrpc": "2.0", "id": 7, "method": inp.get("method", "x"),
               "params": inp.get("params", {})}
    put("jsonrpc", "case-" + os.path.basename(path) + "l", json.dumps(msg) + "\n")

# ---- framing: byte streams ----
put("framing", "session.bin", "".join(json.dumps(m) + "\r\n" for m in session[:4]))
put("framing", "mixed.bin", b"ab\r\nxxxxxxxx\ncd\nlast")
put("framing", "utf8.bin", b"\xff\xfe\nok\n\n\r\n\r")
put("framing", "long.bin", b"x" * 5000 + b"\n" + b"y" * 3 + b"\n")

# ---- config: TOML files ----
readme = open(os.path.join(ROOT, "README.md")).read()
blocks = re.findall(r"```toml\n(.*?)```", readme, re.S)
for i, b in enumerate(blocks):
    put("config", f"readme-{i}.toml", b)
conf_src = open(os.path.join(ROOT, "src/config/mod.rs")).read()
for i, m in enumerate(re.finditer(r'\("(\[\[upstream\]\][^"]*(?:\\.[^"]*)*)",', conf_src)):
    text = m.group(1).encode().decode("unicode_escape")
    put("config", f"unit-{i:02}.toml", text)
put("config", "full.toml", """
[policy]
dir = "rego"
package = "mcp.firewall"
shadow = false
[audit]
path = "/var/log/audit.jsonl"
fsync = "always"
mask_fields = ["ssn"]
[session]
principal = "alice"
[approval]
webhook = "https://approvals.example/hook"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
timeout_seconds = 600
wait_seconds = 5
listen = "127.0.0.1:8787"
data_dir = "approvals"
groups = { sre = ["alice", "bob"] }
[http]
listen = "127.0.0.1:8080"
max_sessions = 4
allowed_origins = ["https://chat.example"]
tokens = [{ principal = "alice", sha256 = "%s", attributes = { team = "sre" } }, { principal = "bot", env = "BOT_TOKEN" }]
[[upstream]]
name = "fs"
command = "npx"
args = ["-y", "server"]
env = { A = "1" }
cwd = "work"
[[upstream]]
name = "remote"
url = "https://mcp.example.com/mcp"
headers = { Authorization = "Bearer static" }
[[upstream]]
name = "legacy"
url = "http://127.0.0.1:9/sse"
transport = "sse"
""" % ("ab" * 32))

# ---- signing: header triples + body, as JSON ----
put("signing", "spec.json", json.dumps({
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "timestamp": "1614265330",
    "signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    "body": '{"test": 2432232314}', "now": 1614265330, "valid": True}, indent=1))
put("signing", "own.json", json.dumps({
    "secret": "whsec_bWNwLWZpcmV3YWxsIGFwcHJvdmFsIHRlc3Qga2V5ISE=",
    "id": "apr_0001", "timestamp": "1795000000",
    "signature": "v1,xr3ehvib5LQtmqPwWdK3GjVZG/iNLGqxjS8PuqgxsIc=",
    "body": '{"a":1}', "now": 1795000000, "valid": True}, indent=1))
put("signing", "rotation.json", json.dumps({
    "secret": "whsec_bWNwLWZpcmV3YWxsIGFwcHJvdmFsIHRlc3Qga2V5ISE=",
    "id": "apr_0001", "timestamp": "1795000000",
    "signature": "v1a,xxxx v1,AAAA v2,zz v1,xr3ehvib5LQtmqPwWdK3GjVZG/iNLGqxjS8PuqgxsIc=",
    "body": '{"a":1}', "now": 1795000100, "valid": True}, indent=1))
put("signing", "empty-sig.json", json.dumps({
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "timestamp": "1614265330",
    "signature": "v1,", "body": '{"test": 2432232314}', "now": 1614265330,
    "valid": False}, indent=1))

# ---- audit: record bodies (JSON objects), one file each ----
for path in sorted(glob.glob(os.path.join(ROOT, "tests/cases/*.json"))):
    case = json.load(open(path))
    body = {"decision_id": "d-1", "input": case.get("input", {}),
            "result": case.get("expected", {}).get("decision", "deny")}
    put("audit", os.path.basename(path), json.dumps(body))
put("audit", "escapes.json", json.dumps(
    {"s": "a\"b\\c\n\u0001\u007f\u2028\ud83d\ude00", "n": [1.5, -0.0, 1e300, 18446744073709551615,
                                                      -9223372036854775808, 0.1],
     "": {}, "B": [], "é": None}))
