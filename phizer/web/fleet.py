"""``phizer --purge PATH --purge-host HOST:PORT ...``: one command purges a fleet.

With a shared Redis one front tells the others; with memcached, a disk tier
alone or no tier, every front must be told: this asks each of them in turn
(``POST /_purge/<path>``, so the command must run from an ``admin_allow``
address) and prints what each answered.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from urllib.parse import quote

TIMEOUT = 10.0


def purge_fleet(paths: Sequence[str], hosts: Sequence[str]) -> int:
    """0 when every host purged every path, else 1 (each failure printed)."""
    failed = False
    for host in hosts:
        for path in paths:
            status, answer = _purge(host, path)
            print(json.dumps({"host": host, "status": status, "answer": answer}))
            failed = failed or status != 200
    return 1 if failed else 0


def _purge(host: str, path: str) -> tuple[int, object]:
    url = f"http://{host}/_purge/{quote(path.strip('/'), safe='/')}"
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read(200).decode("utf-8", "replace").strip()
    except (OSError, ValueError) as error:
        print(f"phizer: purging {path!r} on {host}: {error}", file=sys.stderr)
        return 0, None
