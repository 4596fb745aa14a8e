"""The broker's boot definitions for docker compose: the topology plus the application user.

`python -m shared.messaging.broker_definitions OUTFILE` (the one-shot `rabbitmq-definitions`
compose service) writes the topology of `shared.messaging.topology.definitions()` plus one user,
named by `RABBITMQ_USER` and with the password of `RABBITMQ_PASSWORD`, allowed everything on the
vhost (`AMQP_VHOST`, default `/trading`). RabbitMQ loads the file at boot (`load_definitions` in
`infrastructure/rabbitmq/rabbitmq.conf`); a node that imports definitions at boot does not create
its default `guest` user, so this user is the only one the broker has.

Only a salted hash of the password is written, in the broker's `rabbit_password_hashing_sha256`
format: base64(salt + sha256(salt + utf8(password))) with a random 4-byte salt. No password and
no hash is ever stored in the repository: the file is generated from the environment at each
`docker compose up` into a volume shared with the broker.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.config import Settings, is_placeholder
from shared.messaging.topology import definitions

HASHING_ALGORITHM = "rabbit_password_hashing_sha256"
SALT_BYTES = 4
DEFAULT_USER = "phoenix95"
# Administrator: the operator signs in to the management UI with the same account.
USER_TAGS = ("administrator",)


def password_hash(password: str, salt: bytes | None = None) -> str:
    """The broker's SHA-256 password hash: base64(salt + sha256(salt + utf8(password)))."""
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    if len(salt) != SALT_BYTES:
        raise ValueError(f"the salt must be {SALT_BYTES} bytes")
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def broker_definitions(user: str, password: str, vhost: str = "/trading") -> dict[str, Any]:
    """`topology.definitions(vhost)` plus `user`, with every permission on `vhost`."""
    result = definitions(vhost)
    result["users"] = [
        {
            "name": user,
            "password_hash": password_hash(password),
            "hashing_algorithm": HASHING_ALGORITHM,
            "tags": list(USER_TAGS),
        }
    ]
    result["permissions"] = [
        {"user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
    ]
    return result


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The definitions for the user and vhost the environment names; refuses a placeholder."""
    user = environ.get("RABBITMQ_USER", "").strip() or DEFAULT_USER
    password = environ.get("RABBITMQ_PASSWORD", "")
    if is_placeholder(password):
        raise SystemExit(
            "RABBITMQ_PASSWORD is missing or still the placeholder from .env.example: "
            "set it in the environment (or in .env next to docker-compose.yml)"
        )
    vhost = environ.get("AMQP_VHOST", "").strip() or Settings.model_fields["amqp_vhost"].default
    return broker_definitions(user, password, vhost)


def write_definitions(path: Path, content: Mapping[str, Any]) -> None:
    """Write atomically (the broker never sees half a file), readable by the broker's user."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=2)
            handle.write("\n")
        # The broker runs as another user: it must be able to read the file (a hash, no password).
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m shared.messaging.broker_definitions OUTFILE\n")
        return 2
    content = from_environment(os.environ)
    path = Path(args[0])
    write_definitions(path, content)
    user = content["users"][0]["name"]
    vhost = content["vhosts"][0]["name"]
    sys.stdout.write(f"wrote {path}: topology of vhost {vhost} and user {user}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
