"""Login for API clients (OAuth2 password flow), users, agencies and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from ioc.core import audit
from ioc.core.auth import (
    AccessPolicy,
    Agency,
    ApiKey,
    CurrentPrincipal,
    Principal,
    Requires,
    Role,
    User,
    authenticate_password,
    create_api_key,
    create_user,
    hash_password,
    issue_access_token,
    login_throttle_check,
)
from ioc.core.db import DbSession, utcnow
from ioc.core.problems import Problem

router = APIRouter(prefix="/api/v1", tags=["identity"])

UsersReader = Annotated[Principal, Depends(Requires("users:read"))]
UsersWriter = Annotated[Principal, Depends(Requires("users:write"))]
AgenciesReader = Annotated[Principal, Depends(Requires("agencies:read"))]
AgenciesWriter = Annotated[Principal, Depends(Requires("agencies:write"))]
KeysWriter = Annotated[Principal, Depends(Requires("apikeys:write"))]
AuditReader = Annotated[Principal, Depends(Requires("audit:read"))]


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=3, max_length=64, pattern=r"^[a-z0-9._-]+$")
    password: str = Field(min_length=10, max_length=256)
    role: Role
    full_name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=200, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    agency_id: str | None = Field(default=None, max_length=64)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=200, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    role: Role | None = None
    agency_id: str | None = Field(default=None, max_length=64)
    active: bool | None = None
    password: str | None = Field(default=None, min_length=10, max_length=256)


class UserPublic(BaseModel):
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
    kind: str
    id: str
    name: str
    role: str | None
    agency_id: str | None
    ward_code: str | None
    permissions: list[str]


class AgencyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=2, max_length=64, pattern=r"^[a-z0-9-]+$")
    name: str = Field(min_length=2, max_length=200)
    name_en: str = Field(default="", max_length=200)
    kind: str = Field(pattern=r"^(department|ward)$")
    ward_code: str | None = Field(default=None, pattern=r"^\d{5}$")
    email: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=32)


class AgencyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    name_en: str
    kind: str
    ward_code: str | None


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=2, max_length=200)
    scopes: list[str] = Field(min_length=1, max_length=50)
    agency_id: str | None = Field(default=None, max_length=64)


class ApiKeyPublic(BaseModel):
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
    key: str = Field(description="Shown once; store it now.")


class AuditPublic(BaseModel):
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


def _user_snapshot(user: User) -> dict[str, object]:
    return UserPublic.model_validate(user).model_dump(mode="json")


@router.post("/auth/token", response_model=Token, tags=["identity"])
def login_for_token(
    request: Request,
    session: DbSession,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
) -> Token:
    """OAuth2 password flow: a bearer token for a username and password."""
    login_throttle_check(request, username)
    user = authenticate_password(session, username, password)
    if user is None:
        raise Problem(401, "Sai tên đăng nhập hoặc mật khẩu (wrong username or password).", code="bad-credentials",
                      headers={"WWW-Authenticate": "Bearer"})
    settings = request.app.state.settings
    token = issue_access_token(settings.secret_key, user, settings.access_token_minutes)
    return Token(access_token=token, expires_in=settings.access_token_minutes * 60)


@router.get("/me", response_model=Me)
def me(principal: CurrentPrincipal) -> Me:
    return Me(
        kind=principal.kind,
        id=principal.id,
        name=principal.name,
        role=principal.role.value if principal.role else None,
        agency_id=principal.agency_id,
        ward_code=principal.ward_code,
        permissions=sorted(principal.permissions),
    )


@router.get("/users", response_model=list[UserPublic])
def list_users(session: DbSession, _: UsersReader) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


@router.post("/users", response_model=UserPublic, status_code=201)
def add_user(body: UserCreate, session: DbSession, actor: UsersWriter) -> User:
    user = create_user(session, **body.model_dump())
    audit.record(session, actor, "user.create", "user", user.id, after=_user_snapshot(user))
    return user


@router.patch("/users/{user_id}", response_model=UserPublic)
def update_user(user_id: int, body: UserUpdate, session: DbSession, actor: UsersWriter) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise Problem(404, f"Không có người dùng {user_id}.", code="user-not-found")
    before = _user_snapshot(user)
    changes = body.model_dump(exclude_unset=True)
    if "agency_id" in changes and changes["agency_id"] is not None and session.get(Agency, changes["agency_id"]) is None:
        raise Problem(422, f"Không có cơ quan '{changes['agency_id']}'.", code="unknown-agency")
    role = Role(changes.get("role") or user.role)
    agency_id = changes.get("agency_id", user.agency_id)
    if role in (Role.AGENCY_OFFICER, Role.WARD_OFFICER) and agency_id is None:
        raise Problem(422, f"Vai trò {role.value} cần một cơ quan.", code="agency-required")
    if user.id == actor.user_id and (changes.get("active") is False or ("role" in changes and role != Role.ADMIN)):
        raise Problem(409, "Không thể tự khoá hoặc tự hạ quyền tài khoản của mình.", code="self-lockout")
    if "password" in changes:
        user.password_hash = hash_password(changes.pop("password"))
    for key, value in changes.items():
        setattr(user, key, value.value if isinstance(value, Role) else value)
    session.flush()
    audit.record(session, actor, "user.update", "user", user.id, before=before, after=_user_snapshot(user))
    return user


@router.get("/agencies", response_model=list[AgencyPublic])
def list_agencies(session: DbSession, _: AgenciesReader) -> list[Agency]:
    return list(session.scalars(select(Agency).order_by(Agency.kind, Agency.id)))


@router.post("/agencies", response_model=AgencyPublic, status_code=201)
def add_agency(body: AgencyCreate, session: DbSession, actor: AgenciesWriter) -> Agency:
    if session.get(Agency, body.id) is not None:
        raise Problem(409, f"Cơ quan '{body.id}' đã tồn tại.", code="agency-exists")
    if body.kind == "ward" and not body.ward_code:
        raise Problem(422, "UBND phường cần mã phường (ward_code).", code="ward-code-required")
    agency = Agency(**body.model_dump())
    session.add(agency)
    session.flush()
    audit.record(session, actor, "agency.create", "agency", agency.id, after=body.model_dump())
    return agency


@router.get("/api-keys", response_model=list[ApiKeyPublic])
def list_api_keys(session: DbSession, _: KeysWriter) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201)
def add_api_key(body: ApiKeyCreate, request: Request, session: DbSession, actor: KeysWriter) -> ApiKeyCreated:
    policy: AccessPolicy = request.app.state.policy
    row, key = create_api_key(session, policy, name=body.name, scopes=body.scopes, agency_id=body.agency_id,
                              created_by=actor.name)
    public = ApiKeyPublic.model_validate(row)
    audit.record(session, actor, "apikey.create", "apikey", row.id, after=public.model_dump(mode="json"))
    return ApiKeyCreated(**public.model_dump(), key=key)


@router.delete("/api-keys/{key_id}", status_code=204)
def revoke_api_key(key_id: int, session: DbSession, actor: KeysWriter) -> None:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise Problem(404, f"Không có khoá API {key_id}.", code="apikey-not-found")
    if row.revoked_at is not None:
        raise Problem(409, f"Khoá API {key_id} đã bị thu hồi.", code="apikey-revoked")
    row.revoked_at = utcnow()
    audit.record(session, actor, "apikey.revoke", "apikey", row.id, after={"revoked_at": row.revoked_at.isoformat()})


@router.get("/audit", response_model=list[AuditPublic], tags=["audit"])
def read_audit(
    session: DbSession,
    _: AuditReader,
    object_type: str | None = None,
    object_id: str | None = None,
    actor_id: str | None = None,
    action: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[audit.AuditEntry]:
    return audit.entries(session, object_type=object_type, object_id=object_id, actor_id=actor_id, action=action,
                         limit=limit, offset=offset)
