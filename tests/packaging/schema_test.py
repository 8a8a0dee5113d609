#!/usr/bin/env python3
"""The policy's JSON Schema (schema/policy.schema.json) against pf-proxyd's parser.

  docs       every complete policy in docs/*.md and README.md (a ```json block whose object has
             "proxies"), every examples/*.json and the package's default debian/policy.json:
             pf-proxyd --check accepts it and so does the schema; a block marked <!-- policy: invalid --> is rejected by both.
  agreement  the fuzz corpus's policies, and mutants of the valid policies above (each key
             removed, retyped, pushed past its range, every listener/upstream combination...):
             whatever pf-proxyd accepts the schema accepts; whatever it rejects the schema rejects
             too, unless every one of pf-proxyd's errors is a KNOWN_DIFFERENCES entry.
  print      pf-proxyd --print-schema writes the schema file byte for byte.

Exit 0 when all hold; otherwise one line per disagreement and exit 1.
"""
import argparse
import concurrent.futures
import copy
import json
import pathlib
import re
import subprocess
import sys
import tempfile

import jsonschema

# What the schema cannot express, as patterns of pf-proxyd's error messages, each with why. A
# policy pf-proxyd rejects and the schema accepts is fine only when ALL its errors match these.
KNOWN_DIFFERENCES = [
    # Cross-entry checks: JSON Schema validates each proxy on its own.
    (r"duplicate proxy name ", "names unique across proxies"),
    (r"duplicate listen endpoint ", "listeners compared across proxies, in canonical form"),
    # Duplicate keys: a JSON parser keeps one of them before any schema sees the object.
    (r"duplicate key ", "duplicate object keys are invisible after parsing"),
    # Values inside strings that need arithmetic or the system, not a pattern.
    (r"invalid endpoint .*(is not an IPv[46] address|port must be|CID must be|"
     r"bytes; a Unix socket address holds|unknown interface|scope id|IPv6 addresses must be|"
     r"queue number must be)",
     "address and number ranges inside endpoint strings"),
    (r"invalid (allow entry|source CIDR) .*(is not an IPv[46] address|prefix length|host bits|port range|"
     r"port must be|scope ids)", "address, prefix and port ranges inside allow entries and CIDRs"),
    (r"is not allowed by this list", "whether an allow list admits the upstream address"),
    (r"/filter/(destinations|sources)/[0-9]+: expected an IP address such as",
     "whether a filter's string is an IP address"),
    (r"/filter/source_ports/[0-9]+: expected a port or port range such as",
     "a filter's port range order and bounds inside the string"),
    (r"expected max_flows >= workers", "comparing two keys' numbers"),
    (r"expected a duration (>= resolve_min|<= resolve_max)", "comparing two durations"),
    (r"base_address needs an IP address in the upstream",
     "base_address beside a host-name upstream (the pattern says tcp: only)"),
    (r"ipv6_only applies only to a tcp: or udp: listener on an IPv6 address",
     "the listener's address family inside its string"),
    (r"invalid resolver ", "address and port ranges inside the resolver string"),
    (r"expected a duration of at most (7 days|10ms), got \"", "the range of a duration written as text"),
    (r"expected a whole number of (milli|micro)seconds", "a duration's resolution"),
    (r"nflog_timeout: expected a duration of at most 60s, got \"",
     "the range of a duration written as text"),
    (r"nflog_timeout: expected a multiple of 10ms", "a duration's resolution (the kernel's unit)"),
    (r"expected a duration (>= backoff_initial|<= backoff_max)",
     "comparing two durations, each in any unit"),
    # JSON Schema's "integer" is a mathematical integer: 2.0 is one; pf-proxyd wants 2.
    (r"expected (an integer [0-9]+-[0-9]+|a CID 0-4294967295), got -?[0-9]+\.0+$",
     "2.0 is an integer to JSON Schema"),
]

DOC_GLOBS = ["docs/*.md", "README.md"]
EXAMPLE_GLOBS = ["examples/*.json", "systemd/examples/*.json", "debian/policy.json"]


def load(text_bytes):
    """The document a schema validator would see, or None when it is not JSON at all."""
    try:
        text = text_bytes.decode("utf-8-sig")
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


class Checker:
    def __init__(self, pf_proxyd, schema_path, workdir):
        self.pf_proxyd = pf_proxyd
        self.schema = json.loads(pathlib.Path(schema_path).read_text())
        jsonschema.Draft202012Validator.check_schema(self.schema)
        self.validator = jsonschema.Draft202012Validator(self.schema)
        self.workdir = pathlib.Path(workdir)
        self.count = 0

    def parser(self, data: bytes):
        """(accepted, [error lines]) from pf-proxyd --check."""
        self.count += 1
        path = self.workdir / f"p{self.count}.json"
        path.write_bytes(data)
        r = subprocess.run([self.pf_proxyd, "--check", "--policy", str(path)],
                           capture_output=True, text=True, errors="replace", timeout=60)
        path.unlink()
        if r.returncode not in (0, 1):
            raise RuntimeError(f"pf-proxyd --check exited {r.returncode}: {r.stderr.strip()}")
        if r.returncode == 0 and r.stderr.strip():
            raise RuntimeError(f"pf-proxyd --check exited 0 but printed: {r.stderr.strip()}")
        return r.returncode == 0, [l for l in r.stderr.splitlines() if l]

    def schema_errors(self, data: bytes):
        doc = load(data)
        if doc is None:
            return ["not JSON"]
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:160]}"
                for e in self.validator.iter_errors(doc)]


def unexplained(lines):
    return [l for l in lines if not any(re.search(p, l) for p, _ in KNOWN_DIFFERENCES)]


# ---- policies in the docs --------------------------------------------------------------------

def doc_policies(source):
    """(where, text, expected_valid) of every complete policy in the docs and examples."""
    out = []
    for pattern in DOC_GLOBS:
        for md in sorted(source.glob(pattern)):
            lines = md.read_text().splitlines()
            i = 0
            while i < len(lines):
                if lines[i].strip() != "```json":
                    i += 1
                    continue
                start = i
                j = i + 1
                while j < len(lines) and lines[j].strip() != "```":
                    j += 1
                text = "\n".join(lines[start + 1:j])
                before = next((l.strip() for l in reversed(lines[:start]) if l.strip()), "")
                invalid = before == "<!-- policy: invalid -->"
                where = f"{md.relative_to(source)}:{start + 1}"
                i = j + 1
                try:
                    doc = json.loads(text)
                except ValueError:
                    if '"proxies"' in text:
                        out.append((where, text, None))  # looks like a policy but is not JSON
                    continue
                if isinstance(doc, dict) and "proxies" in doc:
                    out.append((where, text, not invalid))
    for pattern in EXAMPLE_GLOBS:
        for f in sorted(source.glob(pattern)):
            out.append((str(f.relative_to(source)), f.read_text(), True))
    return out


def check_docs(c, source):
    failures = []
    policies = doc_policies(source)
    for where, text, valid in policies:
        if valid is None:
            failures.append(f"{where}: a ```json block with \"proxies\" that is not JSON")
            continue
        data = text.encode()
        accepted, errors = c.parser(data)
        schema = c.schema_errors(data)
        if accepted != valid:
            failures.append(f"{where}: pf-proxyd --check {'accepts' if accepted else 'rejects'} "
                            f"it, expected {'valid' if valid else 'invalid'}: {errors[:3]}")
        if (not schema) != valid:
            failures.append(f"{where}: the schema {'accepts' if not schema else 'rejects'} it, "
                            f"expected {'valid' if valid else 'invalid'}: {schema[:3]}")
    print(f"{len(policies)} policies from the docs and examples checked")
    return failures


# ---- agreement on the corpus and mutants ------------------------------------------------------

BAD_VALUES = ["", "x", -1, 0, 1, 1.5, 2.0, 65536, 4294967296, True, False, None, [], {}, ["x"],
              "0s", "1.5ms", "169h", "10", "tcp:127.0.0.1:1", "standard", {"x": 1}]
ENDPOINTS = ["tcp:127.0.0.1:7001", "tcp:[::1]:7002", "vsock:any:7003", "vsock:3:7004",
             "vsock:3:original-port", "unix:/run/pfp-schema.sock", "unix:@pfp-schema",
             "fc-vsock:/run/fc.sock:7005", "fc-vsock:/run/fc.sock:original-port",
             "systemd:web", "udp:127.0.0.1:7006", "nfqueue:1", "raw:eth0", "destination-header",
             "original-destination", "tcp:1.2.3.4", "tcp:999.1.1.1:80", "vsock:x:1"]
KEY_VALUES = {
    "listen_family": ["tcp", "unix", "vsock", "udp"],
    "send_original_destination": [True, False],
    "header": ["standard", "oyster-v4"],
    "proxy_protocol": [True, False],
    "allow": [["0.0.0.0/0:443"], ["127.0.0.1:7001"], ["10.0.0.0/33:1"], ["[::1]:*"]],
    "allowed_cids": [[3], [3, 3], [4294967295]],
    "allowed_sources": [["10.0.0.0/8"], ["10.0.0.1/8"], ["::1"]],
    "socket_mode": ["0660", "660", "0777", "1777", "0880", 660],
    "socket_owner": ["pf-proxy", "a\u0001"], "socket_group": ["pf-proxy"],
    "workers": [64, 65], "max_connections": [1000000, 1000001], "backlog": [65535, 65536],
    "connect_timeout": ["250ms", 0, "0ms", 604800, 604800.5, "168h", "0.0005s"],
    "idle_timeout": [0, "10m"], "statistics": [True], "log_connections": [True],
    "busy_poll": ["50us", "0.5ms", "10ms", "0.01s", "10001us", "0.5us", "1m", 0.00005, 0.02, 0],
    "keepalive": [True, {"idle": "1s", "count": 127}, {"count": 128}, {"idle": 0}, {"x": 1}],
    "restart": [{"backoff_initial": "1m"}, {"backoff_initial": "1s", "backoff_max": "500ms"},
                {"max_failures": 1000}, {"max_failures": 1001}, {"healthy_after": "1h"}],
    "route_mtu": ["auto", "Auto", 1280, 1279, 65535, 65536, 1500.5],
}
TOP_VALUES = {
    "user": ["pf-proxy", "", "a\u0000b"], "group": ["pf-proxy"],
    "drain_timeout": [0, "30s", "1.5h", "8d", -1],
    "metrics": ["tcp:127.0.0.1:9100", "unix:/run/m.sock", "unix:@m", "vsock:any:1"],
    "control_users": [[], ["a", "a"], ["a", "b"]], "control_groups": [["g"]],
    "$schema": ["file:///usr/share/pf-proxy/policy.schema.json", 1],
    "proxies": [[], {}],
}


def mutants(base):
    """Policies one change away from `base` (a valid policy)."""
    out = []
    for key in list(base):
        m = copy.deepcopy(base)
        del m[key]
        out.append(m)
        for v in BAD_VALUES + TOP_VALUES.get(key, []):
            m = copy.deepcopy(base)
            m[key] = v
            out.append(m)
    for key, values in TOP_VALUES.items():
        for v in values:
            out.append(dict(copy.deepcopy(base), **{key: v}))
    out.append(dict(copy.deepcopy(base), unknown_key=1))
    proxies = base["proxies"]
    for i, proxy in enumerate(proxies[:2]):
        def with_proxy(p):
            m = copy.deepcopy(base)
            m["proxies"][i] = p
            return m
        for key in list(proxy):
            p = copy.deepcopy(proxy)
            del p[key]
            out.append(with_proxy(p))
            for v in BAD_VALUES:
                out.append(with_proxy(dict(proxy, **{key: v})))
        for key, values in KEY_VALUES.items():
            for v in values:
                out.append(with_proxy(dict(proxy, **{key: v})))
        for listen in ENDPOINTS:
            for upstream in ENDPOINTS:
                p = dict(proxy, listen=listen, upstream=upstream)
                p.pop("listen_family", None)
                if listen.startswith("systemd:"):
                    for fam in ["tcp", "vsock", "unix"]:
                        out.append(with_proxy(dict(p, listen_family=fam)))
                else:
                    out.append(with_proxy(p))
        out.append(with_proxy(dict(proxy, upstrem=proxy.get("upstream"))))
        out.append(with_proxy("not an object"))
    if len(proxies) >= 1:
        m = copy.deepcopy(base)
        m["proxies"].append(copy.deepcopy(proxies[0]))  # duplicate name and listener
        out.append(m)
    return out


def check_agreement(c, source, limit):
    bases = []
    for _, text, valid in doc_policies(source):
        if valid:
            bases.append(json.loads(text))
    samples = []  # (where, bytes)
    for f in sorted((source / "tests/fuzz/corpus/policy").iterdir()):
        samples.append((str(f.relative_to(source)), f.read_bytes()))
    seen = set()
    for b, base in enumerate(bases):
        for n, m in enumerate(mutants(base)):
            data = json.dumps(m, indent=1).encode()
            if data not in seen:
                seen.add(data)
                samples.append((f"mutant {b}.{n}: {json.dumps(m)[:300]}", data))
    # An even spread over every base policy and mutation when there are more than `limit`.
    corpus = [x for x in samples if not x[0].startswith("mutant")]
    generated = samples[len(corpus):]
    stride = max(1, -(-len(generated) // max(1, limit - len(corpus))))
    samples = corpus + generated[::stride]
    failures = []
    stats = {"accepted": 0, "rejected by both": 0, "known differences": 0}
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda s: c.parser(s[1]), samples))
    for (where, data), (accepted, errors) in zip(samples, verdicts):
        schema = c.schema_errors(data)
        if accepted:
            stats["accepted"] += 1
            if schema:
                failures.append(f"{where}: pf-proxyd accepts it, the schema rejects it: {schema[:2]}")
        elif schema:
            stats["rejected by both"] += 1
        else:
            left = unexplained(errors)
            if left:
                failures.append(f"{where}: pf-proxyd rejects it, the schema accepts it: {left[:2]}")
            else:
                stats["known differences"] += 1
    print(f"{len(samples)} policies: " + ", ".join(f"{v} {k}" for k, v in stats.items()))
    if stats["rejected by both"] < stats["known differences"]:
        failures.append("fewer rejections shared than differences: the sample is not testing much")
    return failures


def check_print(c, pf_proxyd, schema_path):
    r = subprocess.run([pf_proxyd, "--print-schema"], capture_output=True, timeout=60)
    if r.returncode != 0:
        return [f"pf-proxyd --print-schema exited {r.returncode}"]
    if r.stdout != pathlib.Path(schema_path).read_bytes():
        return ["pf-proxyd --print-schema differs from " + str(schema_path)]
    return []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("check", choices=["docs", "agreement", "print"])
    ap.add_argument("--pf-proxyd", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--limit", type=int, default=2500, help="at most this many policies")
    args = ap.parse_args()
    source = pathlib.Path(args.source)
    schema_path = source / "schema/policy.schema.json"
    with tempfile.TemporaryDirectory(prefix="pfp-schema-") as tmp:
        c = Checker(args.pf_proxyd, schema_path, tmp)
        if args.check == "docs":
            failures = check_docs(c, source)
        elif args.check == "agreement":
            failures = check_agreement(c, source, args.limit)
        else:
            failures = check_print(c, args.pf_proxyd, schema_path)
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
