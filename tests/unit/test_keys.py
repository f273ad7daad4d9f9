"""Keys file: hashed storage, lookup, reload on change."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from strata.keys import KeysFileError, KeyStore, create_keys


def test_create_and_lookup(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    k = create_keys(path, "acme")
    store = KeyStore(path)
    assert store.org_for_api_key(k.api_key) == "acme"
    assert store.org_for_app_key(k.app_key) == "acme"
    assert store.org_for_api_key(k.app_key) is None  # kinds do not mix
    assert store.org_for_api_key("nope") is None
    assert store.org_for_api_key(None) is None
    # Only digests are stored, never the keys themselves.
    text = path.read_text()
    assert k.api_key not in text and k.app_key not in text
    assert json.loads(text)["version"] == 1


def test_new_keys_are_seen_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    store = KeyStore(path, check_every=0.0)
    assert store.org_for_api_key("x") is None
    k = create_keys(path, "later")
    # mtime resolution can hide a change within the same tick; force a distinct mtime.
    os.utime(path, ns=(1, 1_000_000_000))
    assert store.org_for_api_key(k.api_key) == "later"


@pytest.mark.parametrize("org", ["", "a|b", "x" * 101])
def test_invalid_org_names(tmp_path: Path, org: str) -> None:
    with pytest.raises(ValueError):
        create_keys(tmp_path / "keys.json", org)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object at the top level"),
        ('{"version": 7, "keys": []}', "unsupported keys file version 7"),
        ('{"version": 1, "keys": {}}', "'keys' must be a list"),
        ('{"version": 1, "keys": [3]}', "keys[0] must be an object"),
        ('{"version": 1, "keys": [{"org": "x", "sha256": "ab"}]}', "keys[0].kind"),
        ('{"version": 1, "keys": [{"org": "x", "kind": "root", "sha256": "a"}]}', "'api' or"),
    ],
)
def test_malformed_file_is_reported_by_name_until_a_good_one_loads(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    store = KeyStore(path, check_every=0.0)
    with pytest.raises(KeysFileError, match=re.escape(problem)):
        store.org_for_api_key("anything")
    k = create_keys(tmp_path / "good.json", "acme")
    os.replace(tmp_path / "good.json", path)
    assert store.org_for_api_key(k.api_key) == "acme"


def test_a_broken_edit_keeps_the_last_good_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    k = create_keys(path, "acme")
    store = KeyStore(path, check_every=0.0)
    assert store.org_for_api_key(k.api_key) == "acme"
    path.write_text('{"version": 1, "keys": [')  # a half-saved hand edit
    os.utime(path, ns=(1, 2_000_000_000))
    assert store.org_for_api_key(k.api_key) == "acme"
    assert store.org_for_app_key(k.app_key) == "acme"
