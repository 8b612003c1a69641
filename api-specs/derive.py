#!/usr/bin/env python3
"""Re-derive the ElastiCache API model in this folder from a pinned botocore release.

Usage: python3 api-specs/derive.py            (downloads botocore==$BOTOCORE_VERSION from PyPI)
       python3 api-specs/derive.py --from DIR (uses an unpacked botocore/data/elasticache/2015-02-02)

Documentation strings are stripped: the generator needs shapes, not prose, and the
checked-in model stays small and reviewable.
"""
import gzip, json, os, subprocess, sys, tempfile, zipfile

BOTOCORE_VERSION = "1.44.8"
API_VERSION = "2015-02-02"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "elasticache", API_VERSION)
DOC_KEYS = {"documentation", "documentationUrl", "docs"}


def strip_docs(node):
    if isinstance(node, dict):
        return {k: strip_docs(v) for k, v in node.items() if k not in DOC_KEYS}
    if isinstance(node, list):
        return [strip_docs(v) for v in node]
    return node


def read(src, name):
    path = os.path.join(src, name)
    if os.path.exists(path + ".gz"):
        with gzip.open(path + ".gz", "rt") as f:
            return json.load(f)
    with open(path) as f:
        return json.load(f)


def botocore_data_dir():
    if len(sys.argv) == 3 and sys.argv[1] == "--from":
        return sys.argv[2]
    tmp = tempfile.mkdtemp()
    subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                           "-d", tmp, f"botocore=={BOTOCORE_VERSION}"])
    wheel = next(f for f in os.listdir(tmp) if f.endswith(".whl"))
    prefix = f"botocore/data/elasticache/{API_VERSION}/"
    with zipfile.ZipFile(os.path.join(tmp, wheel)) as z:
        for member in z.namelist():
            if member.startswith(prefix):
                z.extract(member, tmp)
    return os.path.join(tmp, prefix)


def main():
    src = botocore_data_dir()
    os.makedirs(OUT, exist_ok=True)
    for name in ("service-2.json", "waiters-2.json", "paginators-1.json"):
        model = strip_docs(read(src, name))
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(model, f, indent=1)
            f.write("\n")
    print(f"wrote {OUT} from botocore {BOTOCORE_VERSION}")


if __name__ == "__main__":
    main()
