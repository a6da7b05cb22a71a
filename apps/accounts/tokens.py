"""Prefixed secret tokens: shown once, stored as a lookup prefix plus a SHA-256 hash.

Format: ``fo_api_<prefix>_<secret>``. The prefix finds the row; the hash of the whole token is
compared with ``hmac.compare_digest``. Secrets carry 256 bits of entropy, so a fast hash is the
right tool (no password-style stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class IssuedToken:
    token: str
    prefix: str
    token_hash: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(kind: str) -> IssuedToken:
    prefix = secrets.token_hex(6)
    token = f"fo_{kind}_{prefix}_{secrets.token_urlsafe(32)}"
    return IssuedToken(token=token, prefix=prefix, token_hash=hash_token(token))


def parse_prefix(token: str, kind: str) -> str | None:
    """The lookup prefix of a well-formed token of ``kind``, else None."""
    head = f"fo_{kind}_"
    if not token.startswith(head) or len(token) > 200:
        return None
    prefix, sep, secret = token[len(head) :].partition("_")
    if not sep or len(prefix) != 12 or not secret:
        return None
    return prefix


def matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_hash)
