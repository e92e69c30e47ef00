"""Login for API clients (OAuth2 password flow), the caller, users, agencies, API keys and the audit log.

Every write here is audited. Management is guarded against privilege escalation: whoever
creates a user or an API key, or changes a user, can grant only what they hold themselves
(:func:`ioc.core.auth.check_may_grant`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from ioc.core import admin_units, audit
from ioc.core.auth import (
    CSRF_HEADER,
    AccessPolicy,
    Agency,
    ApiKey,
    CurrentPrincipal,
    InputModel,
    Principal,
    Requires,
    Role,
    User,
    authenticate_password,
    check_may_grant,
    check_role_agency,
    create_api_key,
    create_user,
    csrf_token,
    hash_password,
    issue_access_token,
    login_throttle_check,
    user_principal,
)
from ioc.core.db import DbSession, utcnow
from ioc.core.problems import Problem, problem_response

router = APIRouter(prefix="/api/v1", tags=["identity"])

UsersReader = Annotated[Principal, Depends(Requires("users:read"))]
UsersWriter = Annotated[Principal, Depends(Requires("users:write"))]
AgenciesReader = Annotated[Principal, Depends(Requires("agencies:read"))]
AgenciesWriter = Annotated[Principal, Depends(Requires("agencies:write"))]
KeysWriter = Annotated[Principal, Depends(Requires("apikeys:write"))]
AuditReader = Annotated[Principal, Depends(Requires("audit:read"))]

#: Ids are 32-bit on both databases; a larger number is a 422, not a database error.
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_USERNAME = r"^[a-z0-9._-]+$"
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
_AGENCY_ID = r"^[a-z0-9-]+$"


class Token(BaseModel):
    """An OAuth2 bearer token."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)
    expires_in: int


class UserCreate(InputModel):
    """A new member of staff."""

    username: str = Field(min_length=3, max_length=64, pattern=_USERNAME)
    password: str = Field(min_length=10, max_length=256)
    role: Role
    full_name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=200, pattern=_EMAIL)
    agency_id: str | None = Field(default=None, max_length=64, pattern=_AGENCY_ID)


class UserUpdate(InputModel):
    """Changes to a user; fields left out stay as they are."""

    full_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=200, pattern=_EMAIL)
    role: Role | None = None
    agency_id: str | None = Field(default=None, max_length=64, pattern=_AGENCY_ID)
    active: bool | None = None
    password: str | None = Field(default=None, min_length=10, max_length=256)

    @model_validator(mode="after")
    def _no_null_for_required(self) -> UserUpdate:
        # ``email`` and ``agency_id`` may be emptied with null; these may not (NOT NULL columns).
        for name in ("full_name", "role", "active", "password"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"'{name}' không được là null ('{name}' cannot be null)")
        return self


class UserPublic(BaseModel):
    """A user as shown to those who may read users (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    full_name: str
    email: str | None
    role: str
    agency_id: str | None
    active: bool
    created_at: datetime
    last_login_at: datetime | None


class Me(BaseModel):
    """The caller: who they are and what they may do."""

    kind: str
    id: str
    name: str
    role: str | None
    agency_id: str | None
    ward_code: str | None
    permissions: list[str]
    csrf_token: str | None = Field(
        default=None, description=f"For browser sessions: send it as {CSRF_HEADER} on writes"
    )


class AgencyCreate(InputModel):
    """A new department or ward People's Committee."""

    id: str = Field(min_length=2, max_length=64, pattern=_AGENCY_ID)
    name: str = Field(min_length=2, max_length=200)
    name_en: str = Field(default="", max_length=200)
    kind: str = Field(pattern=r"^(department|ward)$")
    ward_code: str | None = Field(default=None, pattern=r"^\d{5}$")
    email: str | None = Field(default=None, max_length=200, pattern=_EMAIL)
    phone: str | None = Field(default=None, max_length=32, pattern=r"^[0-9 +().-]+$")


class AgencyPublic(BaseModel):
    """An agency."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    name_en: str
    kind: str
    ward_code: str | None


class ApiKeyCreate(InputModel):
    """A new API key for a device or an integrating system."""

    name: str = Field(min_length=2, max_length=200, pattern=_PRINTABLE)
    scopes: list[str] = Field(min_length=1, max_length=50)
    agency_id: str | None = Field(default=None, max_length=64, pattern=_AGENCY_ID)


class ApiKeyPublic(BaseModel):
    """An API key as listed (never the key nor its digest)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    scopes: list[str]
    agency_id: str | None
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    """A new API key, with the key itself — shown this once only."""

    key: str = Field(description="Shown once; store it now.")


class AuditPublic(BaseModel):
    """One audit row."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor_kind: str
    actor_id: str
    actor_name: str
    action: str
    object_type: str
    object_id: str
    before: dict[str, object] | None
    after: dict[str, object] | None
    ip: str | None


def _user_snapshot(user: User) -> dict[str, Any]:
    return UserPublic.model_validate(user).model_dump(mode="json")


def _key_snapshot(row: ApiKey) -> dict[str, Any]:
    return ApiKeyPublic.model_validate(row).model_dump(mode="json")


def _policy(request: Request) -> AccessPolicy:
    policy: AccessPolicy = request.app.state.policy
    return policy


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post("/auth/token", response_model=Token, tags=["identity"], responses={401: {}, 429: {}})
def login_for_token(
    request: Request,
    session: DbSession,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    grant_type: Annotated[str | None, Form(pattern=r"^password$")] = None,
) -> Token | JSONResponse:
    """OAuth2 password flow: a bearer token for a username and password.

    Attempts are throttled per client and username (429 with ``Retry-After``). Success and
    failure are both audited; the answer to a failure does not say whether the user exists.
    """
    login_throttle_check(request, username)
    user = authenticate_password(session, username, password)
    ip = _client_ip(request)
    if user is None:
        # Answered rather than raised, so that the audit row of the failure is committed.
        audit.record(session, None, "login_failed", "user", username[:64], after={"via": "token"}, ip=ip)
        problem = Problem(
            401,
            "Sai tên đăng nhập hoặc mật khẩu (wrong username or password).",
            code="bad-credentials",
            headers={"WWW-Authenticate": "Bearer"},
            error="invalid_grant",
        )
        return problem_response(problem, request)
    settings = request.app.state.settings
    token = issue_access_token(settings.secret_key, user, settings.access_token_minutes)
    actor = user_principal(session, user, _policy(request), ip)
    audit.record(session, actor, "login", "user", user.id, after={"via": "token"})
    return Token(access_token=token, expires_in=settings.access_token_minutes * 60)


@router.get("/me", response_model=Me)
def me(request: Request, principal: CurrentPrincipal) -> Me:
    """Who is calling, with what permissions (and, for a browser session, its CSRF token)."""
    return Me(
        kind=principal.kind,
        id=principal.id,
        name=principal.name,
        role=principal.role.value if principal.role else None,
        agency_id=principal.agency_id,
        ward_code=principal.ward_code,
        permissions=sorted(principal.permissions),
        csrf_token=csrf_token(request) if principal.via_cookie else None,
    )


@router.get("/users", response_model=list[UserPublic])
def list_users(session: DbSession, _: UsersReader) -> list[User]:
    """Every user, by username."""
    return list(session.scalars(select(User).order_by(User.username)))


@router.post("/users", response_model=UserPublic, status_code=201)
def add_user(body: UserCreate, request: Request, session: DbSession, actor: UsersWriter) -> User:
    """Create a user; officers need an agency (a ward's committee for ward officers)."""
    check_may_grant(actor, _policy(request).for_role(body.role), body.agency_id)
    user = create_user(session, **body.model_dump())
    audit.record(session, actor, "user.create", "user", user.id, after=_user_snapshot(user))
    return user


@router.patch("/users/{user_id}", response_model=UserPublic)
def update_user(user_id: RowId, body: UserUpdate, request: Request, session: DbSession, actor: UsersWriter) -> User:
    """Change a user's details, role, agency, password or activity.

    Nobody can lock themselves out (deactivate or demote their own account), and nobody can
    touch an account, or grant a role, above their own permissions.
    """
    user = session.get(User, user_id)
    if user is None:
        raise Problem(404, f"Không có người dùng {user_id} (user not found).", code="user-not-found")
    policy = _policy(request)
    changes = body.model_dump(exclude_unset=True)
    current_role = Role(user.role)
    role = Role(changes.get("role") or current_role)
    agency_id = changes.get("agency_id", user.agency_id)
    # Both the account as it is and as it will be must be within the actor's power.
    check_may_grant(actor, policy.for_role(current_role), user.agency_id)
    check_may_grant(actor, policy.for_role(role), agency_id)
    check_role_agency(session, role, agency_id)
    if user.id == actor.user_id and (changes.get("active") is False or role != current_role):
        raise Problem(
            409, "Không thể tự khoá hoặc tự đổi vai trò của mình (cannot lock yourself out).", code="self-lockout"
        )
    before = _user_snapshot(user)
    if "password" in changes:
        try:
            user.password_hash = hash_password(changes.pop("password"))
        except ValueError as exc:
            raise Problem(422, str(exc), code="weak-password") from exc
    for key, value in changes.items():
        setattr(user, key, value.value if isinstance(value, Role) else value)
    session.flush()
    after = _user_snapshot(user)
    if "password" in body.model_fields_set:
        after["password_changed"] = True  # the fact, never the hash
    audit.record(session, actor, "user.update", "user", user.id, before=before, after=after)
    return user


@router.get("/agencies", response_model=list[AgencyPublic])
def list_agencies(session: DbSession, _: AgenciesReader) -> list[Agency]:
    """The departments and ward committees that officers belong to."""
    return list(session.scalars(select(Agency).order_by(Agency.kind, Agency.id)))


@router.post("/agencies", response_model=AgencyPublic, status_code=201)
def add_agency(body: AgencyCreate, session: DbSession, actor: AgenciesWriter) -> Agency:
    """Add an agency; a ward's committee names a ward in force, a department names none."""
    if session.get(Agency, body.id) is not None:
        raise Problem(409, f"Cơ quan '{body.id}' đã tồn tại (agency exists).", code="agency-exists")
    if body.kind == "ward":
        unit = admin_units.get_unit(session, body.ward_code) if body.ward_code else None
        if unit is None or unit.level not in ("ward", "commune") or not unit.in_force(admin_units.vn_today()):
            raise Problem(422, "UBND phường cần mã một phường đang hiệu lực (ward_code).", code="ward-code-required")
    elif body.ward_code is not None:
        raise Problem(422, "Sở/ngành không gắn với một phường (a department has no ward_code).", code="unexpected-ward")
    agency = Agency(**body.model_dump())
    session.add(agency)
    session.flush()
    audit.record(session, actor, "agency.create", "agency", agency.id, after=body.model_dump(mode="json"))
    return agency


@router.get("/api-keys", response_model=list[ApiKeyPublic])
def list_api_keys(session: DbSession, _: KeysWriter) -> list[ApiKey]:
    """Every API key (without the keys themselves)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201)
def add_api_key(body: ApiKeyCreate, request: Request, session: DbSession, actor: KeysWriter) -> ApiKeyCreated:
    """Create an API key limited to ``scopes``; the key is in this answer only, never again."""
    check_may_grant(actor, body.scopes, body.agency_id)
    row, key = create_api_key(
        session,
        _policy(request),
        name=body.name,
        scopes=body.scopes,
        agency_id=body.agency_id,
        created_by=actor.name,
    )
    public = ApiKeyPublic.model_validate(row)
    audit.record(session, actor, "apikey.create", "apikey", row.id, after=public.model_dump(mode="json"))
    return ApiKeyCreated(**public.model_dump(), key=key)


@router.delete("/api-keys/{key_id}", status_code=204)
def revoke_api_key(key_id: RowId, session: DbSession, actor: KeysWriter) -> None:
    """Revoke an API key: it stops working at once."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise Problem(404, f"Không có khoá API {key_id} (API key not found).", code="apikey-not-found")
    if row.revoked_at is not None:
        raise Problem(409, f"Khoá API {key_id} đã bị thu hồi (already revoked).", code="apikey-revoked")
    before = _key_snapshot(row)
    row.revoked_at = utcnow()
    session.flush()
    audit.record(session, actor, "apikey.revoke", "apikey", row.id, before=before, after=_key_snapshot(row))


@router.get("/audit", response_model=list[AuditPublic], tags=["audit"])
def read_audit(
    session: DbSession,
    _: AuditReader,
    object_type: Annotated[str | None, Query(max_length=64, pattern=_PRINTABLE)] = None,
    object_id: Annotated[str | None, Query(max_length=128, pattern=_PRINTABLE)] = None,
    actor_id: Annotated[str | None, Query(max_length=64, pattern=_PRINTABLE)] = None,
    action: Annotated[str | None, Query(max_length=64, pattern=_PRINTABLE)] = None,
    since: Annotated[AwareDatetime | None, Query(description="At or after (ISO 8601 with offset)")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Before (ISO 8601 with offset)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[audit.AuditEntry]:
    """The audit log, newest first (admins only)."""
    if since is not None and until is not None and until <= since:
        raise Problem(422, "'until' phải sau 'since' ('until' must be after 'since').", code="bad-period")
    return audit.entries(
        session,
        object_type=object_type,
        object_id=object_id,
        actor_id=actor_id,
        action=action,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
