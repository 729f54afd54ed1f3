"""`make pg-schema` writes resonate-pg's schema only when its sha256 matches the pinned one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import pg_schema


def test_a_file_with_another_checksum_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    source = tmp_path / "served.sql"
    source.write_text("DROP TABLE everything;")
    target = tmp_path / "resonate.sql"
    with pytest.raises(SystemExit, match="expected " + pg_schema.SHA256):
        pg_schema.main(source.as_uri(), target)
    assert not target.exists()


def test_the_pinned_schema_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "served.sql"
    source.write_text("-- the schema")
    monkeypatch.setattr(pg_schema, "SHA256", hashlib.sha256(b"-- the schema").hexdigest())
    target = tmp_path / "resonate.sql"
    pg_schema.main(source.as_uri(), target)
    assert target.read_text() == "-- the schema"


def test_an_unreachable_url_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"cannot download http://127\.0\.0\.1:9/"):
        pg_schema.main("http://127.0.0.1:9/resonate.sql", tmp_path / "resonate.sql")
