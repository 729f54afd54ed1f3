"""Download resonate-pg's schema at a pinned commit and check its sha256.

Used by `make pg-schema`. The schema is resonate-pg's, not ours: it is never
committed here. Apply it once to the database RESONATE_PG_DSN names.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.error
import urllib.request
from pathlib import Path

COMMIT = "9187493c30d6bfca98472baf128bca4c45862219"
SHA256 = "f4cc2e6c646acee6a9b358d3dd1684997d223e52edc6e075f7d866035f37ae2e"
URL = f"https://raw.githubusercontent.com/resonatehq/resonate-pg/{COMMIT}/resonate.sql"


def main(url: str = URL, target: Path = Path("resonate.sql")) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as exc:
        sys.exit(f"pg-schema: cannot download {url}: {exc}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        sys.exit(f"pg-schema: {url} has sha256 {digest}, expected {SHA256}; nothing written")
    target.write_bytes(data)
    print(f"pg-schema: wrote {target} (resonate-pg {COMMIT[:12]}, sha256 verified)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else URL)
