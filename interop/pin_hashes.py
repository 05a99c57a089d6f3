#!/usr/bin/env python3
"""Rewrites a requirements file's `name==version` lines with the SHA-256 of
every file PyPI's simple index lists for that release, so that setup.sh can install with
--require-hashes. Run after changing a pin:

    python3 interop/pin_hashes.py interop/python/requirements.txt
"""
import re
import sys
import urllib.request

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)")


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def hashes(name, version):
    """Every file of name==version on PyPI's simple index, by its sha256."""
    url = "https://pypi.org/simple/%s/" % norm(name)
    with urllib.request.urlopen(url, timeout=30) as r:
        page = r.read().decode()
    out = set()
    for fname, digest in re.findall(r'/([^/#"]+)#sha256=([0-9a-f]{64})', page):
        if fname.endswith(".whl"):
            dist, ver = fname.split("-")[:2]
        else:
            m = re.match(r"(.+)-([^-]+)\.(tar\.gz|zip)$", fname)
            if not m:
                continue
            dist, ver = m.group(1), m.group(2)
        if norm(dist) == norm(name) and ver == version:
            out.add(digest)
    if not out:
        sys.exit("no files for %s==%s on %s" % (name, version, url))
    return sorted(out)


def main(path):
    out, lines = [], open(path).read().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = PIN.match(line)
        if not m:
            out.append(line)
            i += 1
            continue
        while line.rstrip().endswith("\\"):  # drop the old hashes
            i += 1
            line = lines[i]
        name, version = m.groups()
        hs = hashes(name, version)
        out.append("%s==%s \\" % (name, version))
        out.extend("    --hash=sha256:%s%s" % (h, " \\" if k < len(hs) - 1 else "") for k, h in enumerate(hs))
        i += 1
    open(path, "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        main(p)
