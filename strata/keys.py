"""API and application keys, mapped to orgs through a keys file.

Keys are random 32-hex-character strings; the file stores only their SHA-256 digests (keys
are high-entropy, so a slow password hash buys nothing). Readers reload the file when its
modification time changes, so a running pipeline honours ``strata keys create`` within
seconds. Keys are never logged; only the org name is.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEYS_FORMAT_VERSION = 1


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class NewKeys:
    org: str
    api_key: str
    app_key: str


def _read(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return {"version": KEYS_FORMAT_VERSION, "keys": []}
    if data.get("version") != KEYS_FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported keys file version {data.get('version')!r}")
    return data


def create_keys(path: Path, org: str, *, api_key: str | None = None) -> NewKeys:
    """Append a new API key and application key for ``org``; return them in clear once."""
    if not org or any(c in org for c in "|\x00") or len(org) > 100:
        raise ValueError("org must be 1-100 characters without '|' or NUL")
    api = api_key or secrets.token_hex(16)
    app = secrets.token_hex(20)
    data = _read(path)
    now = int(time.time())
    data["keys"].append({"org": org, "kind": "api", "sha256": digest(api), "created": now})
    data["keys"].append({"org": org, "kind": "app", "sha256": digest(app), "created": now})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)  # atomic: readers never see a half-written file
    return NewKeys(org, api, app)


class KeyStore:
    """Read side: key -> org lookups, reloading the file when it changes."""

    def __init__(self, path: Path, *, check_every: float = 1.0) -> None:
        self._path = path
        self._check_every = check_every
        self._checked = 0.0
        self._mtime: float | None = None
        self._api: dict[str, str] = {}
        self._app: dict[str, str] = {}
        self.reload_if_changed(force=True)

    def reload_if_changed(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self._check_every:
            return
        self._checked = now
        try:
            mtime = self._path.stat().st_mtime_ns / 1e9
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime and not force:
            return
        data = _read(self._path)
        api: dict[str, str] = {}
        app: dict[str, str] = {}
        for entry in data["keys"]:
            (api if entry["kind"] == "api" else app)[entry["sha256"]] = entry["org"]
        self._api, self._app, self._mtime = api, app, mtime

    def org_for_api_key(self, key: str | None) -> str | None:
        if not key:
            return None
        self.reload_if_changed()
        return self._api.get(digest(key))

    def org_for_app_key(self, key: str | None) -> str | None:
        if not key:
            return None
        self.reload_if_changed()
        return self._app.get(digest(key))
