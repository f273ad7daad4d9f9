"""The files ``strata up`` keeps in its data directory, and how they are written.

- ``endpoints.json`` (mode 0600): where the running pipeline answers and the default org's
  keys in clear. Written once every component is healthy, removed on a clean stop, so its
  presence means "strata up is (or was, if it was SIGKILLed) running".
- ``supervisor.json``: pid, phase and restart count of every component, rewritten on every
  change; ``strata status`` and the end-to-end tests read pids from it.
- ``credentials.json`` (mode 0600): the default org's clear keys, kept across runs because
  keys.json holds only digests; without it every ``strata up`` would mint new keys.

Every write is atomic (temp file + rename) so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from strata.keys import KeyStore, NewKeys, create_keys

ENDPOINTS_FILE = "endpoints.json"
SUPERVISOR_FILE = "supervisor.json"
CREDENTIALS_FILE = "credentials.json"


class EndpointsFileError(ValueError):
    """A data-directory file exists but is not the JSON object we wrote."""


def write_json_atomic(path: Path, data: dict[str, Any], *, private: bool = False) -> None:
    """Write ``data`` to ``path`` atomically; ``private`` makes it readable by the owner only.

    The temp file is created with the final mode, so the secret never exists world-readable.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    mode = 0o600 if private else 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.chmod(tmp, mode)  # in case the file pre-existed with another mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the file does not exist."""
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise EndpointsFileError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise EndpointsFileError(f"{path}: expected a JSON object")
    return data


def default_org_keys(data_dir: Path, keys_path: Path, org: str) -> tuple[NewKeys, bool]:
    """Clear keys for ``org``: the remembered ones if keys.json still honours them, else new.

    Returns ``(keys, created)``. New keys are appended to ``keys_path`` (via
    :func:`strata.keys.create_keys`) and remembered in DATA_DIR/credentials.json.
    """
    cred_path = data_dir / CREDENTIALS_FILE
    creds = read_json(cred_path) or {}
    known = creds.get(org)
    if isinstance(known, dict):
        api, app = known.get("api_key"), known.get("app_key")
        if isinstance(api, str) and isinstance(app, str) and keys_path.exists():
            store = KeyStore(keys_path)
            if store.org_for_api_key(api) == org and store.org_for_app_key(app) == org:
                return NewKeys(org, api, app), False
    keys = create_keys(keys_path, org)
    creds[org] = {"api_key": keys.api_key, "app_key": keys.app_key}
    write_json_atomic(cred_path, creds, private=True)
    return keys, True
