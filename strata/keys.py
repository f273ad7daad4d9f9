"""API and application keys, mapped to orgs through a keys file.

Keys are random 32-hex-character strings; the file stores only their SHA-256 digests (keys
are high-entropy, so a slow password hash buys nothing). Readers reload the file when its
modification time changes, so a running pipeline honours ``strata keys create`` within
seconds. A file that turns unreadable (a bad hand edit) does not take a running service
down: it keeps the keys it last loaded and logs the problem until the file is fixed. Keys
are never logged; only the org name is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEYS_FORMAT_VERSION = 1

log = logging.getLogger(__name__)


class KeysFileError(ValueError):
    """The keys file is unreadable or malformed; the message names the problem."""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class NewKeys:
    org: str
    api_key: str
    app_key: str


def _read(path: Path) -> dict[str, Any]:
    """The parsed, validated keys file (an empty one if it does not exist)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {"version": KEYS_FORMAT_VERSION, "keys": []}
    except OSError as exc:
        raise KeysFileError(f"{path}: cannot read: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise KeysFileError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise KeysFileError(f"{path}: expected a JSON object at the top level")
    if data.get("version") != KEYS_FORMAT_VERSION:
        raise KeysFileError(f"{path}: unsupported keys file version {data.get('version')!r}")
    entries = data.get("keys")
    if not isinstance(entries, list):
        raise KeysFileError(f"{path}: 'keys' must be a list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise KeysFileError(f"{path}: keys[{i}] must be an object")
        for name in ("org", "kind", "sha256"):
            if not isinstance(entry.get(name), str):
                raise KeysFileError(f"{path}: keys[{i}].{name} must be a string")
        if entry["kind"] not in ("api", "app"):
            raise KeysFileError(f"{path}: keys[{i}].kind must be 'api' or 'app'")
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
    """Read side: key -> org lookups, reloading the file when it changes.

    Lookups raise :class:`KeysFileError` only while no valid file has ever been loaded
    (services answer 503: they cannot tell customers apart); after that a broken file is
    logged and the last good keys stay in force.
    """

    def __init__(self, path: Path, *, check_every: float = 1.0) -> None:
        self._path = path
        self._check_every = check_every
        self._checked = 0.0
        self._mtime: float | None = None
        self._api: dict[str, str] = {}
        self._app: dict[str, str] = {}
        self._loaded = False
        self._error: KeysFileError | None = None
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
        try:
            data = _read(self._path)
        except KeysFileError as exc:
            self._mtime = mtime  # report once per change of the file, not on every check
            self._error = exc
            if self._loaded:
                log.error("%s; keeping the keys loaded before", exc)
            else:
                log.error("%s; no keys loaded yet", exc)
            return
        api: dict[str, str] = {}
        app: dict[str, str] = {}
        for entry in data["keys"]:
            (api if entry["kind"] == "api" else app)[entry["sha256"]] = entry["org"]
        self._api, self._app, self._mtime = api, app, mtime
        self._loaded, self._error = True, None

    def _current(self) -> None:
        self.reload_if_changed()
        if not self._loaded and self._error is not None:
            raise self._error

    def org_for_api_key(self, key: str | None) -> str | None:
        """The org of an API key, ``None`` if unknown; :class:`KeysFileError` (see class)."""
        self._current()
        if not key:
            return None
        return self._api.get(digest(key))

    def org_for_app_key(self, key: str | None) -> str | None:
        """The org of an application key, ``None`` if unknown; :class:`KeysFileError`."""
        self._current()
        if not key:
            return None
        return self._app.get(digest(key))
