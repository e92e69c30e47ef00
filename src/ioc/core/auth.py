"""Identity and access: agencies, users, roles, API keys, tokens, web sessions and CSRF.

Who may do what is declared as data (:data:`ROLE_PERMISSIONS`); modules add their own
permissions and grants through the registry. Ward and agency officers are *scoped*: they
see and change only objects of their ward or agency (:meth:`Principal.can_access`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, NamedTuple

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy import Boolean, ForeignKey, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from ioc.core.db import Base, DbSession, JsonDoc, UTCDateTime, utcnow
from ioc.core.problems import Problem


class Role(StrEnum):
    """The roles of the IOC's staff."""

    ADMIN = "admin"
    OPERATOR = "operator"
    AGENCY_OFFICER = "agency_officer"
    WARD_OFFICER = "ward_officer"
    VIEWER = "viewer"


SCOPED_ROLES = frozenset({Role.AGENCY_OFFICER, Role.WARD_OFFICER})

#: The core's permissions; modules register theirs through the registry.
CORE_PERMISSIONS: dict[str, str] = {
    "alarms:read": "Xem cảnh báo / read alarms",
    "alarms:write": "Xác nhận, xoá cảnh báo / acknowledge and clear alarms",
    "alarms:raise": "Tạo cảnh báo / raise alarms (integrations)",
    "events:read": "Nhận luồng sự kiện / read the event stream",
    "agencies:read": "Xem cơ quan / read agencies",
    "agencies:write": "Quản lý cơ quan / manage agencies",
    "users:read": "Xem người dùng / read users",
    "users:write": "Quản lý người dùng / manage users",
    "apikeys:write": "Quản lý khoá API / manage API keys",
    "audit:read": "Xem nhật ký kiểm toán / read the audit log",
}

#: What each role may do. ``*`` is every permission.
ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.ADMIN: frozenset({"*"}),
    Role.OPERATOR: frozenset(
        {"alarms:read", "alarms:write", "alarms:raise", "events:read", "agencies:read", "users:read"}
    ),
    Role.AGENCY_OFFICER: frozenset({"alarms:read", "alarms:write", "events:read", "agencies:read"}),
    Role.WARD_OFFICER: frozenset({"alarms:read", "alarms:write", "events:read", "agencies:read"}),
    Role.VIEWER: frozenset({"alarms:read", "events:read", "agencies:read"}),
}


@dataclass
class AccessPolicy:
    """Known permissions and role grants: the core's plus what modules registered."""

    permissions: dict[str, str] = field(default_factory=lambda: dict(CORE_PERMISSIONS))
    grants: dict[Role, set[str]] = field(
        default_factory=lambda: {role: set(perms) for role, perms in ROLE_PERMISSIONS.items()}
    )

    def add(self, permission: str, description: str, roles: Iterable[Role] = ()) -> None:
        """Declare ``permission`` and grant it to ``roles`` (admins hold every permission)."""
        self.permissions[permission] = description
        for role in roles:
            self.grants[role].add(permission)

    def for_role(self, role: Role) -> frozenset[str]:
        """What a user of ``role`` may do."""
        return frozenset(self.grants[role])


# --------------------------------------------------------------------------- tables


class Agency(Base):
    """A city department or a ward's People's Committee; officers belong to one."""

    __tablename__ = "agencies"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # slug, e.g. "ubnd-thanh-vinh"
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(16))  # department | ward
    ward_code: Mapped[str | None] = mapped_column(String(8), nullable=True, index=True)
    email: Mapped[str | None] = mapped_column(String(200), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class User(Base):
    """A member of staff who logs in."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(200), nullable=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"), nullable=True, index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ApiKey(Base):
    """A key for a device or an integrating system, limited to its scopes."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JsonDoc)
    agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"), nullable=True)
    created_by: Mapped[str] = mapped_column(String(64), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


# --------------------------------------------------------------------------- input hygiene

#: Deepest nesting accepted in a free-form JSON document (``details`` of an alarm, ...).
MAX_JSON_DEPTH = 32


def check_storable(value: Any, *, _depth: int = 0) -> None:
    """Raise ``ValueError`` for a value the databases or JSON cannot keep faithfully.

    Refused: NUL characters (PostgreSQL text and JSONB reject them, so they would surface as
    a 500 on one database only), NaN and infinities (not JSON: the answer could not be
    serialised) and documents nested deeper than :data:`MAX_JSON_DEPTH`.
    """
    if _depth > MAX_JSON_DEPTH:
        raise ValueError(f"lồng quá sâu (nested deeper than {MAX_JSON_DEPTH} levels)")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("chứa ký tự NUL (NUL character not allowed)")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("số không hữu hạn (NaN or Infinity not allowed)")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key, _depth=_depth + 1)
            check_storable(item, _depth=_depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            check_storable(item, _depth=_depth + 1)


class InputModel(BaseModel):
    """Base of request bodies: unknown fields refused, every value storable on both databases."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        check_storable(value)
        return value


# --------------------------------------------------------------------------- principal


@dataclass(frozen=True)
class Principal:
    """Who is calling: a logged-in user or an API key, with what they may do."""

    kind: str  # "user" | "apikey"
    id: str
    name: str
    permissions: frozenset[str]
    role: Role | None = None
    agency_id: str | None = None
    ward_code: str | None = None
    user_id: int | None = None
    ip: str | None = None
    via_cookie: bool = False

    def has(self, permission: str) -> bool:
        """Whether the principal may do ``permission``."""
        return "*" in self.permissions or permission in self.permissions

    def covers(self, permissions: Iterable[str]) -> bool:
        """Whether this principal holds every one of ``permissions`` (and so may hand them on)."""
        if "*" in self.permissions:
            return True
        wanted = set(permissions)
        return "*" not in wanted and wanted <= self.permissions

    @property
    def scoped(self) -> bool:
        """True when the principal sees only its own ward's or agency's objects."""
        if self.kind == "apikey":
            return self.agency_id is not None
        return self.role in SCOPED_ROLES

    def can_access(self, *, ward_code: str | None, agency_id: str | None) -> bool:
        """Whether an object of ``ward_code``/``agency_id`` belongs to this principal's remit."""
        if not self.scoped:
            return True
        if self.role == Role.WARD_OFFICER:
            return self.ward_code is not None and ward_code == self.ward_code
        return self.agency_id is not None and agency_id == self.agency_id

    def audit_dict(self) -> dict[str, Any]:
        """Who this is, as an audit row names it."""
        return {"kind": self.kind, "id": self.id, "name": self.name}


def check_may_grant(actor: Principal, permissions: Iterable[str], agency_id: str | None) -> None:
    """403 unless ``actor`` could itself do all it is granting, inside its own remit.

    This is what stops privilege escalation through the management endpoints: a key or a
    user allowed to manage users or API keys cannot create an admin, a key with wider scopes
    than its own, or an account of another agency.
    """
    if not actor.covers(permissions):
        raise Problem(
            403,
            "Không thể cấp quyền vượt quá quyền của chính mình (cannot grant more than you hold).",
            code="privilege-escalation",
        )
    if actor.scoped and agency_id != actor.agency_id:
        raise Problem(
            403,
            "Không thể cấp quyền ngoài cơ quan của mình (cannot grant outside your own agency).",
            code="out-of-remit",
        )


# --------------------------------------------------------------------------- passwords

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``; refuses passwords that are too short or too long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"Mật khẩu phải có ít nhất {MIN_PASSWORD_LENGTH} ký tự.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"Mật khẩu dài quá {MAX_PASSWORD_LENGTH} ký tự.")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches the stored hash (constant time)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    """A valid hash to verify against when there is no usable account, so timing reveals nothing."""
    return _hasher.hash(secrets.token_urlsafe(16))


def authenticate_password(session: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, or None.

    Every failure costs one argon2 verification — unknown user, inactive user, wrong
    password alike — so response times do not tell which accounts exist.
    """
    user = None
    if username and "\x00" not in username and len(password) <= MAX_PASSWORD_LENGTH:
        user = session.scalar(select(User).where(User.username == username))
    if user is None:
        verify_password(_dummy_hash(), password[:MAX_PASSWORD_LENGTH])
        return None
    ok = verify_password(user.password_hash, password)
    if not ok or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    return user


def check_role_agency(session: Session, role: Role, agency_id: str | None) -> Agency | None:
    """The agency of a user of ``role``, after checking the rules (422 otherwise).

    Officers need an agency (otherwise they would see nothing, or — worse — be mistaken for
    unscoped staff), and a ward officer's agency must be a ward's People's Committee.
    """
    agency = session.get(Agency, agency_id) if agency_id is not None else None
    if agency_id is not None and agency is None:
        raise Problem(422, f"Không có cơ quan '{agency_id}' (unknown agency).", code="unknown-agency")
    if role in SCOPED_ROLES and agency is None:
        raise Problem(422, f"Vai trò {role.value} cần một cơ quan (agency_id) hợp lệ.", code="agency-required")
    if role == Role.WARD_OFFICER and (agency is None or not agency.ward_code):
        raise Problem(422, "Cán bộ phường phải thuộc UBND một phường.", code="ward-agency-required")
    return agency


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: Role | str,
    full_name: str = "",
    email: str | None = None,
    agency_id: str | None = None,
) -> User:
    """Create a user after checking the role/agency rules (no commit)."""
    role = Role(role)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Problem(409, f"Tên đăng nhập '{username}' đã tồn tại.", code="username-taken")
    check_role_agency(session, role, agency_id)
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise Problem(422, str(exc), code="weak-password") from exc
    user = User(
        username=username,
        password_hash=password_hash,
        role=role.value,
        full_name=full_name,
        email=email,
        agency_id=agency_id,
        active=True,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # created concurrently by another request
        raise Problem(409, f"Tên đăng nhập '{username}' đã tồn tại.", code="username-taken") from exc
    return user


def user_principal(session: Session, user: User, policy: AccessPolicy, ip: str | None = None) -> Principal:
    """The principal of ``user``: the permissions of its role, its agency and ward."""
    role = Role(user.role)
    agency = session.get(Agency, user.agency_id) if user.agency_id else None
    return Principal(
        kind="user",
        id=f"user:{user.id}",
        name=user.username,
        permissions=policy.for_role(role),
        role=role,
        agency_id=user.agency_id,
        ward_code=agency.ward_code if agency else None,
        user_id=user.id,
        ip=ip,
    )


# --------------------------------------------------------------------------- tokens

TOKEN_ALGORITHM = "HS256"  # noqa: S105 (an algorithm name, not a secret)


class AccessClaims(NamedTuple):
    """What a valid access token says."""

    user_id: int
    credential: str


def credential_stamp(secret: str, user: User) -> str:
    """A short keyed digest of the user's password hash, carried by tokens and web sessions.

    Changing the password changes the stamp, which ends every token and session issued
    before — a stolen token does not outlive a password reset.
    """
    digest = hmac.new(secret.encode(), user.password_hash.encode(), hashlib.sha256).hexdigest()
    return digest[:24]


def issue_access_token(secret: str, user: User, minutes: int) -> str:
    """A signed bearer token for ``user``, valid ``minutes``."""
    now = utcnow()
    claims = {
        "sub": str(user.id),
        "typ": "access",
        "role": user.role,
        "cst": credential_stamp(secret, user),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=minutes)).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=TOKEN_ALGORITHM)


def read_access_token(secret: str, token: str) -> AccessClaims:
    """The claims of a valid access token; raises Problem 401 otherwise."""
    try:
        claims = jwt.decode(token, secret, algorithms=[TOKEN_ALGORITHM], options={"require": ["exp", "iat", "sub"]})
    except jwt.ExpiredSignatureError as exc:
        raise _unauthorized("Mã truy cập đã hết hạn (token expired).") from exc
    except jwt.PyJWTError as exc:
        raise _unauthorized("Mã truy cập không hợp lệ (invalid token).") from exc
    if claims.get("typ") != "access":
        raise _unauthorized("Mã truy cập không hợp lệ (wrong token type).")
    stamp = claims.get("cst")
    if not isinstance(stamp, str):
        raise _unauthorized("Mã truy cập không hợp lệ (invalid token).")
    try:
        return AccessClaims(int(claims["sub"]), stamp)
    except (TypeError, ValueError) as exc:
        raise _unauthorized("Mã truy cập không hợp lệ (invalid subject).") from exc


def token_user(session: Session, secret: str, token: str) -> User:
    """The active user of a valid access token whose password has not changed since; 401 otherwise."""
    claims = read_access_token(secret, token)
    user = session.get(User, claims.user_id)
    if user is None or not user.active:
        raise _unauthorized("Người dùng không còn hoạt động (user inactive or removed).")
    if not hmac.compare_digest(claims.credential, credential_stamp(secret, user)):
        raise _unauthorized("Mã truy cập đã bị thu hồi (token revoked: credentials changed).")
    return user


# --------------------------------------------------------------------------- API keys

API_KEY_PREFIX = "ioc_"
_KEY_PREFIX_LENGTH = 8  # hex characters of the public part that finds the row
#: ``last_used_at`` is written at most this often, so reads with a key do not all write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _key_digest(secret: str) -> str:
    # The key is 256 random bits: a fast hash is enough (no dictionary to guess from).
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(
    session: Session,
    policy: AccessPolicy,
    *,
    name: str,
    scopes: Iterable[str],
    agency_id: str | None = None,
    created_by: str = "system",
) -> tuple[ApiKey, str]:
    """Create an API key; returns the row and the key itself, which is shown only once.

    Only its SHA-256 digest is stored. ``scopes`` must be known permissions (``*`` is not
    one: a key is always limited).
    """
    scope_list = sorted(set(scopes))
    unknown = [s for s in scope_list if s not in policy.permissions]
    if not scope_list or unknown:
        known = ", ".join(sorted(policy.permissions))
        raise Problem(
            422,
            f"Phạm vi (scope) không hợp lệ: {unknown or 'trống'}. Hợp lệ (known): {known}.",
            code="bad-scope",
            unknown=unknown,
        )
    if agency_id is not None and session.get(Agency, agency_id) is None:
        raise Problem(422, f"Không có cơ quan '{agency_id}' (unknown agency).", code="unknown-agency")
    prefix = secrets.token_hex(_KEY_PREFIX_LENGTH // 2)
    secret = secrets.token_urlsafe(32)
    key = f"{API_KEY_PREFIX}{prefix}_{secret}"
    row = ApiKey(
        name=name,
        prefix=prefix,
        key_hash=_key_digest(key),
        scopes=scope_list,
        agency_id=agency_id,
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    return row, key


def api_key_principal(session: Session, key: str, ip: str | None = None) -> Principal:
    """The principal of a valid, unrevoked API key; raises Problem 401 otherwise."""
    prefix = key[len(API_KEY_PREFIX) : len(API_KEY_PREFIX) + _KEY_PREFIX_LENGTH]
    well_formed = (
        key.startswith(API_KEY_PREFIX)
        and len(key) <= 200
        and len(prefix) == _KEY_PREFIX_LENGTH
        and all(c in "0123456789abcdef" for c in prefix)
        and key[len(API_KEY_PREFIX) + _KEY_PREFIX_LENGTH : len(API_KEY_PREFIX) + _KEY_PREFIX_LENGTH + 1] == "_"
    )
    if not well_formed:
        raise _unauthorized("Khoá API không hợp lệ (malformed API key).", scheme="ApiKey")
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, _key_digest(key)):
        raise _unauthorized("Khoá API không hợp lệ hoặc đã bị thu hồi (invalid or revoked API key).", scheme="ApiKey")
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
    agency = session.get(Agency, row.agency_id) if row.agency_id else None
    return Principal(
        kind="apikey",
        id=f"apikey:{row.id}",
        name=row.name,
        permissions=frozenset(row.scopes),
        agency_id=row.agency_id,
        ward_code=agency.ward_code if agency else None,
        ip=ip,
    )


# --------------------------------------------------------------------------- web sessions & CSRF

SESSION_USER = "uid"
SESSION_CSRF = "csrf"
SESSION_STARTED = "t"
SESSION_STAMP = "cst"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser session, created on first use."""
    token = request.session.get(SESSION_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[SESSION_CSRF] = token
    return token


def check_csrf(request: Request, token: str | None) -> None:
    """Raise Problem 403 unless ``token`` is this session's CSRF token."""
    expected = request.session.get(SESSION_CSRF)
    if not isinstance(expected, str) or not token or not hmac.compare_digest(expected.encode(), token.encode()):
        raise Problem(403, "Thiếu hoặc sai mã CSRF (CSRF token missing or invalid).", code="csrf")


def start_web_session(request: Request, user: User) -> None:
    """Log ``user`` in for this browser: a fresh session (no fixation) with a new CSRF token."""
    request.session.clear()
    request.session[SESSION_USER] = user.id
    request.session[SESSION_STARTED] = int(time.time())
    request.session[SESSION_STAMP] = credential_stamp(request.app.state.settings.secret_key, user)
    request.session[SESSION_CSRF] = secrets.token_urlsafe(32)


def end_web_session(request: Request) -> None:
    """Log the browser out: forget everything in its session."""
    request.session.clear()


def _policy(request: Request) -> AccessPolicy:
    policy: AccessPolicy = request.app.state.policy
    return policy


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def web_principal(request: Request, session: Session) -> Principal | None:
    """The logged-in user of the browser session, if the session is valid and the user active.

    A session ends when it is older than ``session_hours``, when the user is deactivated
    and when the password changed since the login.
    """
    uid = request.session.get(SESSION_USER)
    started = request.session.get(SESSION_STARTED)
    stamp = request.session.get(SESSION_STAMP)
    if not isinstance(uid, int) or not isinstance(started, int) or not isinstance(stamp, str):
        return None
    settings = request.app.state.settings
    hours: int = settings.session_hours
    if time.time() - started > hours * 3600:
        request.session.clear()
        return None
    user = session.get(User, uid)
    if user is None or not user.active or not hmac.compare_digest(stamp, credential_stamp(settings.secret_key, user)):
        request.session.clear()
        return None
    principal = user_principal(session, user, _policy(request), _client_ip(request))
    return replace(principal, via_cookie=True)


# --------------------------------------------------------------------------- login throttling


class LoginThrottle:
    """At most ``per_minute`` login attempts (failed or not) per (client, username) per minute.

    Kept in the process's memory: with several workers each counts its own share, which
    still bounds guessing. Entries idle for a minute are pruned so that a spray of
    usernames cannot grow the table without end.
    """

    WINDOW_SECONDS = 60.0
    PRUNE_ABOVE = 10_000

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str, username: str) -> None:
        """Count an attempt; raise Problem 429 with ``Retry-After`` when over the limit."""
        now = time.monotonic()
        with self._lock:
            if len(self._hits) > self.PRUNE_ABOVE:
                self._prune(now)
            hits = self._hits.setdefault((client, username.strip().lower()), deque())
            while hits and now - hits[0] > self.WINDOW_SECONDS:
                hits.popleft()
            if len(hits) >= self.per_minute:
                wait = int(self.WINDOW_SECONDS - (now - hits[0])) + 1
                raise Problem(
                    429,
                    f"Quá nhiều lần đăng nhập; thử lại sau {wait} giây (too many login attempts).",
                    code="too-many-logins",
                    headers={"Retry-After": str(wait)},
                )
            hits.append(now)

    def _prune(self, now: float) -> None:
        stale = [k for k, hits in self._hits.items() if not hits or now - hits[-1] > self.WINDOW_SECONDS]
        for key in stale:
            del self._hits[key]

    def __len__(self) -> int:
        return len(self._hits)


def login_throttle_check(request: Request, username: str) -> None:
    """Count a login attempt of this client for ``username`` (429 when over the limit)."""
    throttle: LoginThrottle = request.app.state.login_throttle
    throttle.check(_client_ip(request) or "?", username)


# --------------------------------------------------------------------------- dependencies


def _unauthorized(detail: str, scheme: str = "Bearer") -> Problem:
    return Problem(401, detail, code="unauthorized", headers={"WWW-Authenticate": scheme})


def optional_principal(request: Request, session: DbSession) -> Principal | None:
    """The caller, from a bearer token, an API key, or the browser session (with CSRF on writes).

    Credentials that are present but wrong are a 401 — never a silent fall-back to
    anonymous or to the cookie.
    """
    ip = _client_ip(request)
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    api_key = request.headers.get("x-api-key")
    if scheme.lower() == "bearer" and credentials:
        user = token_user(session, request.app.state.settings.secret_key, credentials)
        return user_principal(session, user, _policy(request), ip)
    if scheme.lower() == "apikey" and credentials:
        api_key = credentials
    if api_key is not None:
        return api_key_principal(session, api_key.strip(), ip)
    principal = web_principal(request, session)
    if principal is not None and request.method in UNSAFE_METHODS:
        check_csrf(request, request.headers.get(CSRF_HEADER))
    return principal


def current_principal(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    """The caller; 401 when nobody is authenticated."""
    if principal is None:
        raise _unauthorized("Cần đăng nhập hoặc khoá API (authentication required).")
    return principal


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


class Requires:
    """Dependency: the caller must hold ``permission`` (403 otherwise)."""

    def __init__(self, permission: str) -> None:
        self.permission = permission

    def __call__(self, principal: CurrentPrincipal) -> Principal:
        if not principal.has(self.permission):
            raise Problem(
                403,
                f"Không có quyền '{self.permission}' (permission '{self.permission}' required).",
                code="forbidden",
                permission=self.permission,
            )
        return principal
