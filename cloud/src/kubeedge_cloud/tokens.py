"""Node tokens: HS256 JWTs naming the node, signed with the cloud's secret, with an expiry.

``kubeedge token create NODE`` makes one; the hub checks it before it accepts a connection. The
secret is a file (``tokenSecretFile``, default ``DATA_DIR/token.secret``) created with mode 0600
on first use; rotating it (deleting the file) invalidates every token issued.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import jwt

from kubeedge.errors import ConfigError

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
SECRET_BYTES = 32


def load_or_create_secret(path: Path) -> bytes:
    """The signing secret in ``path``, created (0600, 32 random bytes, hex) if there is none."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"tokenSecretFile: cannot create {path}: {exc.strerror or exc}") from None
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(SECRET_BYTES) + "\n")
        log.info("created the token secret %s", path)
    try:
        mode = path.stat().st_mode
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"tokenSecretFile: cannot read {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("tokenSecretFile %s can be read by others (mode %o): chmod 600 it", path, mode & 0o777)
    if len(secret) < 32:
        raise ConfigError(f"tokenSecretFile: {path} holds {len(secret)} bytes; at least 32 are needed")
    return secret


def create_token(secret: bytes, node: str, ttl: dt.timedelta, now: dt.datetime | None = None) -> str:
    """A token for ``node``, valid for ``ttl`` from ``now``."""
    issued = now or dt.datetime.now(dt.UTC)
    claims = {"node": node, "iat": int(issued.timestamp()), "exp": int((issued + ttl).timestamp())}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


@dataclass(frozen=True)
class Refusal:
    """Why a connection is refused: an HTTP status (401: who are you; 403: not for this node)."""

    status: int
    reason: str


def check_token(secret: bytes, token: str | None, node: str) -> Refusal | None:
    """``None`` if ``token`` is a valid token for ``node``, else why not."""
    if not token:
        return Refusal(401, "missing token: send 'Authorization: Bearer TOKEN' (kubeedge token create NODE)")
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "iat", "node"]}
        )
    except jwt.ExpiredSignatureError:
        return Refusal(401, f"token expired at {_expiry(token)}: make a new one with kubeedge token create")
    except jwt.InvalidSignatureError:
        return Refusal(401, "token signature is not valid: not signed by this cloud's secret")
    except jwt.MissingRequiredClaimError as exc:
        return Refusal(401, f"token has no {exc.claim!r} claim")
    except jwt.InvalidTokenError as exc:
        return Refusal(401, f"token is not valid: {str(exc)[:200]}")
    if claims["node"] != node:
        return Refusal(403, f"token is for node {str(claims['node'])[:253]}, not {node}")
    return None


def _expiry(token: str) -> str:
    try:
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        return dt.datetime.fromtimestamp(int(exp), dt.UTC).isoformat(timespec="seconds")
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError, OverflowError):
        return "?"


def parse_ttl(text: str) -> dt.timedelta:
    """``90s``, ``30m``, ``24h``, ``7d`` (or a number of seconds)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise ConfigError(f"--ttl {text!r}: expected a duration like 90s, 30m, 24h or 7d") from None
    if seconds <= 0:
        raise ConfigError(f"--ttl {text!r}: must be positive")
    return dt.timedelta(seconds=seconds)
