#!/usr/bin/env python3
"""An independent verifier of mcp-firewall audit logs and signed checkpoints,
written from docs/audit-format.md alone (it shares no code with the firewall).

    verify_audit.py LOG [--checkpoints CP --public-key KEY.pub]

Exit 0 and "ok: ..." when the chain (and every checkpoint) holds; exit 1 and
"BROKEN: ..." / "TAMPERED: ..." naming the first problem otherwise.

Needs Python 3.9+; checkpoints need the `cryptography` package (Ed25519).
"""

import argparse
import base64
import hashlib
import json
import sys

GENESIS = "sha256:" + "0" * 64
DOMAIN = b"mcp-firewall audit checkpoint v1\n"


def members(line: str):
    """The top-level members of a canonical JSON object line, as
    (key, raw text of `"key":value`) in order."""
    decoder = json.JSONDecoder()
    if not line.startswith("{") or not line.endswith("}"):
        raise ValueError("not a JSON object")
    out, pos = [], 1
    if line[pos] == "}":
        return out
    while True:
        start = pos
        key, pos = decoder.raw_decode(line, pos)
        if line[pos] != ":":
            raise ValueError("expected ':'")
        _, pos = decoder.raw_decode(line, pos + 1)
        out.append((key, line[start:pos]))
        if line[pos] == "}":
            if pos != len(line) - 1:
                raise ValueError("trailing text")
            return out
        if line[pos] != ",":
            raise ValueError("expected ','")
        pos += 1


def record_hash(line: str) -> str:
    """sha256 over the line without its top-level `hash` member."""
    kept = [text for key, text in members(line) if key != "hash"]
    unhashed = "{" + ",".join(kept) + "}"
    return "sha256:" + hashlib.sha256(unhashed.encode("utf-8")).hexdigest()


def verify_chain(path):
    """Every record's hash in seq order; raises ValueError naming the line."""
    hashes, prev = [], GENESIS
    with open(path, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        last_line = data.count(b"\n") + 1
        raise ValueError(f"line {last_line}: torn write (no final newline)")
    for number, raw in enumerate(data.split(b"\n")[:-1] if data else [], start=1):
        line = raw.decode("utf-8")
        try:
            record = json.loads(line)
            computed = record_hash(line)
        except ValueError as e:
            raise ValueError(f"line {number}: unparsable ({e})")
        if record.get("hash") != computed:
            raise ValueError(f"line {number}: hash mismatch (the record was edited)")
        if record.get("seq") != len(hashes) + 1:
            raise ValueError(f"line {number}: seq {record.get('seq')} where {len(hashes) + 1} was expected")
        if record.get("prev") != prev:
            raise ValueError(f"line {number}: chain broken (prev is not the previous record's hash)")
        prev = computed
        hashes.append(computed)
    return hashes


def load_public_key(path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    with open(path, "rb") as f:
        key = load_ssh_public_key(f.read().strip())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 key")
    blob = base64.b64decode(open(path).read().split()[1])
    fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return key, fingerprint


def verify_checkpoints(hashes, path, public_key_path):
    from cryptography.exceptions import InvalidSignature

    key, fingerprint = load_public_key(public_key_path)
    last = None
    count = 0
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines, start=1):
        at = f"checkpoint file line {number}"
        cp = json.loads(line)
        if set(cp) != {"n", "seq", "head", "time", "key", "sig"}:
            raise ValueError(f"{at}: not a checkpoint")
        if cp["key"] != fingerprint:
            raise ValueError(f"{at}: signed by {cp['key']}, not by {fingerprint}")
        body = {k: cp[k] for k in ("head", "key", "n", "seq", "time")}
        signed = DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        try:
            key.verify(base64.b64decode(cp["sig"]), signed)
        except InvalidSignature:
            raise ValueError(f"{at}: bad signature (forged or altered checkpoint n {cp['n']})")
        expected_n = last["n"] + 1 if last else 1
        if cp["n"] != expected_n:
            raise ValueError(f"{at}: checkpoint n {cp['n']} where n {expected_n} was expected")
        if last and cp["seq"] < last["seq"]:
            raise ValueError(f"{at}: seq goes back")
        covered = last["seq"] if last else 0
        if cp["seq"] > len(hashes):
            raise ValueError(
                f"the log ends at seq {len(hashes)} but checkpoint n {cp['n']} covers seq {cp['seq']}: "
                "records were cut off the end"
            )
        if hashes[cp["seq"] - 1] != cp["head"]:
            raise ValueError(
                f"the log diverges from checkpoint n {cp['n']}: altered after seq {covered} "
                f"and at or before seq {cp['seq']}"
            )
        count += 1
        last = cp
    return count, last


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--checkpoints")
    parser.add_argument("--public-key")
    args = parser.parse_args()
    if bool(args.checkpoints) != bool(args.public_key):
        parser.error("--checkpoints and --public-key go together")
    try:
        hashes = verify_chain(args.log)
    except (OSError, ValueError) as e:
        print(f"BROKEN: {args.log}: {e}")
        return 1
    print(f"ok: {len(hashes)} records, head {hashes[-1] if hashes else GENESIS}")
    if not args.checkpoints:
        return 0
    try:
        count, last = verify_checkpoints(hashes, args.checkpoints, args.public_key)
    except (OSError, ValueError) as e:
        print(f"TAMPERED: {args.log}: {e}")
        return 1
    if last is None:
        print(f"WARNING: {args.checkpoints} has no checkpoints yet")
    else:
        print(f"ok: {count} checkpoints match; the last covers seq {last['seq']} (signed {last['time']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
