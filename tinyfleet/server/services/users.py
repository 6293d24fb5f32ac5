"""Users, their roles and API tokens; resolving a bearer token to who is calling (a `Principal`).

A token is `tf_` + 32 random bytes (base64url). Only its SHA-256 is stored: a token has 256 bits of
entropy, so a fast hash cannot be brute-forced and a stolen database yields no usable token. The plaintext
is returned once, by `create_token`. `TokenResolver` answers the check that runs on every API request
before any body is read, from an in-memory cache (entries live `ttl` seconds, dropped at once when this
process revokes a token or disables a user), so a known token costs a hash and a dict lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tinyfleet.server.config import ConfigError
from tinyfleet.server.db import session_scope
from tinyfleet.server.models import ApiToken, User
from tinyfleet.server.services.errors import Conflict, Invalid, NotFound

ROLES = ("viewer", "operator", "admin")  # each role may do everything the ones before it may
RANK = {role: i for i, role in enumerate(ROLES)}
BOOTSTRAP = "bootstrap"  # the development token's principal (TINYFLEET_API_TOKEN)
UNKNOWN = "unknown"  # the audit log's actor when no token was recognised
RESERVED_NAMES = frozenset({BOOTSTRAP, UNKNOWN})
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
TOKEN_PREFIX = "tf_"
SHOWN_PREFIX = 10  # characters of a token kept for display: "tf_" + 7 random ones
CACHE_TTL_S = 10.0  # how long another server process may keep honouring a token it revoked


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (and the token used) or the development bootstrap token."""

    name: str
    role: str
    user_id: int | None = None
    token_id: int | None = None

    def allows(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str, what: str = "user name") -> str:
    if not NAME_RE.match(name):
        raise Invalid(f"{what} must be 1-64 of a-z 0-9 . _ - (starting with a letter or digit): {name!r}")
    return name


def check_role(role: str) -> str:
    if role not in RANK:
        raise Invalid(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role


# --- users -----------------------------------------------------------------------------------------------


def user_public(u: User) -> dict[str, Any]:
    return {"name": u.name, "role": u.role, "created_at": u.created_at, "disabled": u.disabled}


def create_user(session: Session, name: str, role: str) -> User:
    check_name(name)
    check_role(role)
    if name in RESERVED_NAMES:
        raise Invalid(f"user name {name!r} is reserved")
    if session.exec(select(User).where(User.name == name)).first() is not None:
        raise Conflict(f"user {name!r} already exists")
    user = User(name=name, role=role, created_at=time.time(), disabled=False)
    session.add(user)
    session.flush()
    return user


def list_users(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.name))))


def get_user(session: Session, name: str) -> User:
    user = session.exec(select(User).where(User.name == name)).first()
    if user is None:
        raise NotFound(f"user {name!r} not found")
    return user


def disable_user(session: Session, name: str) -> User:
    """Disabled users keep their row (the audit log names them) but none of their tokens works."""
    user = get_user(session, name)
    user.disabled = True
    session.add(user)
    return user


def has_admin(session: Session) -> bool:
    stmt = select(User.id).where(User.role == "admin", col(User.disabled).is_(False))
    return session.exec(stmt).first() is not None


# --- tokens ----------------------------------------------------------------------------------------------


def token_public(t: ApiToken, user: str) -> dict[str, Any]:
    return {
        "id": t.id,
        "user": user,
        "name": t.name,
        "prefix": t.prefix,
        "created_at": t.created_at,
        "last_used_at": t.last_used_at,
        "revoked_at": t.revoked_at,
    }


def create_token(session: Session, user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for `user`: the row (hash and prefix only) and the plaintext, never stored."""
    check_name(name, "token name")
    if user.disabled:
        raise Conflict(f"user {user.name!r} is disabled")
    assert user.id is not None
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_token(plaintext),
        prefix=plaintext[:SHOWN_PREFIX],
        created_at=time.time(),
    )
    session.add(row)
    session.flush()
    return row, plaintext


def list_tokens(session: Session, user_id: int | None = None) -> list[tuple[ApiToken, str]]:
    """(token, its user's name), all users' when `user_id` is None."""
    stmt = select(ApiToken, User.name).join(User, col(User.id) == ApiToken.user_id).order_by(col(ApiToken.id))
    if user_id is not None:
        stmt = stmt.where(ApiToken.user_id == user_id)
    return [(t, name) for t, name in session.exec(stmt)]


def get_token(session: Session, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"token {token_id} not found")
    return token


def revoke_token(session: Session, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = time.time()
        session.add(token)
    return token


# --- resolving a bearer token ----------------------------------------------------------------------------


class TokenResolver:
    """Bearer token -> Principal, cached. `db()` gives the engine; `bootstrap()` the token accepted as
    the admin 'bootstrap' (None: none is, as in production)."""

    def __init__(
        self, db: Callable[[], Engine], bootstrap: Callable[[], str | None], ttl: float = CACHE_TTL_S
    ) -> None:
        self.db = db
        self.bootstrap = bootstrap
        self.ttl = ttl
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def _bootstrap(self, token: str) -> Principal | None:
        expected = self.bootstrap()
        if expected and hmac.compare_digest(token.encode(), expected.encode()):
            return Principal(BOOTSTRAP, "admin")
        return None

    def cached(self, token: str) -> Principal | None:
        """The principal without touching the database, or None when the database must be asked."""
        boot = self._bootstrap(token)
        if boot is not None:
            return boot
        entry = self._cache.get(hash_token(token))
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        return None

    def resolve(self, token: str) -> Principal | None:
        """The principal of `token`, or None for an unknown, revoked or disabled user's token."""
        found = self.cached(token)
        if found is not None or not token.startswith(TOKEN_PREFIX):
            return found
        digest = hash_token(token)
        with session_scope(self.db()) as session:
            stmt = (
                select(ApiToken, User)
                .join(User, col(User.id) == ApiToken.user_id)
                .where(ApiToken.token_hash == digest)
            )
            row = session.exec(stmt).first()
            if row is None or row[0].revoked_at is not None or row[1].disabled:
                return None
            token_row, user = row
            # Written when the cache entry is (re)made: last use is known to within the cache's ttl.
            token_row.last_used_at = time.time()
            session.add(token_row)
            principal = Principal(user.name, user.role, user.id, token_row.id)
        with self._lock:
            self._cache[digest] = (principal, time.monotonic() + self.ttl)
        return principal

    def forget(self, *, token_id: int | None = None, user_id: int | None = None) -> None:
        """Drop cached entries of a revoked token or a disabled user (call after the commit)."""
        with self._lock:
            for key, (p, _) in list(self._cache.items()):
                if (token_id is not None and p.token_id == token_id) or (
                    user_id is not None and p.user_id == user_id
                ):
                    del self._cache[key]


def require_admin_user(db: Engine) -> None:
    """Production's start check: someone must be able to administer the server."""
    with session_scope(db) as session:
        if not has_admin(session):
            raise ConfigError(
                "refusing to start in production mode: no enabled admin user; create one with"
                " `tinyfleet users create NAME --role admin --offline` (prints its first token)"
            )
