"""Identity and access in the core: passwords, users, tokens, API keys, grants, throttling."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

import jwt
import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select, update

from ioc.core.auth import (
    API_KEY_PREFIX,
    MAX_JSON_DEPTH,
    TOKEN_ALGORITHM,
    AccessPolicy,
    ApiKey,
    LoginThrottle,
    Principal,
    Role,
    User,
    api_key_principal,
    authenticate_password,
    check_may_grant,
    check_storable,
    create_api_key,
    create_user,
    hash_password,
    issue_access_token,
    read_access_token,
    token_user,
    verify_password,
)
from ioc.core.db import Database, utcnow
from ioc.core.problems import Problem
from tests.conftest import PASSWORD, SECRET, MakeUser

# --------------------------------------------------------------------------- passwords


def test_passwords_are_argon2id_hashes_never_the_password() -> None:
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert "correct horse battery" not in hashed
    assert hash_password("correct horse battery") != hashed  # salted
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "correct horse batterY")
    assert not verify_password("not a hash", "correct horse battery")


@pytest.mark.parametrize("password", ["", "short", "123456789"])
def test_short_passwords_are_refused(password: str) -> None:
    with pytest.raises(ValueError, match="ít nhất"):
        hash_password(password)


def test_create_user_stores_only_the_hash(db: Database) -> None:
    with db.session() as s:
        create_user(s, username="thu.ha", password="mật-khẩu-dài-2025", role=Role.VIEWER)
    with db.session() as s:
        user = s.scalars(select(User).where(User.username == "thu.ha")).one()
        assert user.password_hash.startswith("$argon2id$")
        assert "mật-khẩu-dài-2025" not in user.password_hash
        assert verify_password(user.password_hash, "mật-khẩu-dài-2025")


def test_create_user_refuses_a_weak_password(db: Database) -> None:
    with db.session() as s, pytest.raises(Problem) as exc:
        create_user(s, username="weak", password="short", role=Role.VIEWER)
    assert exc.value.status == 422
    assert exc.value.code == "weak-password"


def test_create_user_enforces_role_and_agency(db: Database) -> None:
    cases = [
        (Role.AGENCY_OFFICER, None, "agency-required"),
        (Role.WARD_OFFICER, None, "agency-required"),
        (Role.WARD_OFFICER, "so-nnmt", "ward-agency-required"),  # a department has no ward
        (Role.AGENCY_OFFICER, "so-khong-co", "unknown-agency"),
        (Role.VIEWER, "so-khong-co", "unknown-agency"),
    ]
    for role, agency_id, code in cases:
        with db.session() as s, pytest.raises(Problem) as exc:
            create_user(s, username="officer", password=PASSWORD, role=role, agency_id=agency_id)
        assert (exc.value.status, exc.value.code) == (422, code), (role, agency_id)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 0


def test_create_user_refuses_a_taken_username(db: Database, make_user: MakeUser) -> None:
    make_user("viewer", username="trung")
    with db.session() as s, pytest.raises(Problem) as exc:
        create_user(s, username="trung", password=PASSWORD, role=Role.VIEWER)
    assert exc.value.status == 409


def test_authenticate_password(db: Database, make_user: MakeUser) -> None:
    make_user("operator", username="truc.ban")
    with db.session() as s:
        user = authenticate_password(s, "truc.ban", PASSWORD)
        assert user is not None
        assert user.last_login_at is not None
        assert authenticate_password(s, "truc.ban", PASSWORD + "x") is None
        assert authenticate_password(s, "khong.co", PASSWORD) is None
        assert authenticate_password(s, "", PASSWORD) is None
        # A NUL in the name must not reach the database (PostgreSQL refuses it: a 500).
        assert authenticate_password(s, "truc\x00ban", PASSWORD) is None


def test_an_inactive_user_cannot_authenticate(db: Database, make_user: MakeUser) -> None:
    user = make_user("viewer")
    with db.session() as s:
        s.execute(update(User).where(User.id == user.id).values(active=False))
    with db.session() as s:
        assert authenticate_password(s, user.username, PASSWORD) is None


def test_an_outdated_hash_is_upgraded_at_login(db: Database, make_user: MakeUser) -> None:
    user = make_user("viewer")
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    with db.session() as s:
        s.execute(update(User).where(User.id == user.id).values(password_hash=weak))
    with db.session() as s:
        assert authenticate_password(s, user.username, PASSWORD) is not None
    with db.session() as s:
        upgraded = s.get(User, user.id)
        assert upgraded is not None
        assert upgraded.password_hash != weak
        assert verify_password(upgraded.password_hash, PASSWORD)


# --------------------------------------------------------------------------- tokens


def _claims(user: User, **overrides: object) -> dict[str, object]:
    token = issue_access_token(SECRET, user, 5)
    claims: dict[str, object] = jwt.decode(token, SECRET, algorithms=[TOKEN_ALGORITHM])
    claims.update(overrides)
    return claims


def test_access_token_round_trip(db: Database, make_user: MakeUser) -> None:
    user = make_user("viewer")
    claims = read_access_token(SECRET, issue_access_token(SECRET, user, 5))
    assert claims.user_id == user.id
    with db.session() as s:
        assert token_user(s, SECRET, issue_access_token(SECRET, user, 5)).id == user.id


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda u: jwt.encode(_claims(u, exp=int(utcnow().timestamp()) - 5), SECRET), id="expired"),
        pytest.param(lambda u: jwt.encode(_claims(u, typ="refresh"), SECRET), id="wrong-type"),
        pytest.param(lambda u: jwt.encode(_claims(u), "another-secret-of-some-length-123"), id="wrong-key"),
        pytest.param(lambda u: jwt.encode(_claims(u, sub="abc"), SECRET), id="bad-subject"),
        pytest.param(lambda u: jwt.encode({k: v for k, v in _claims(u).items() if k != "cst"}, SECRET), id="no-stamp"),
        pytest.param(lambda u: jwt.encode({k: v for k, v in _claims(u).items() if k != "exp"}, SECRET), id="no-expiry"),
        pytest.param(lambda u: jwt.encode(_claims(u), None, algorithm="none"), id="alg-none"),
        pytest.param(lambda u: issue_access_token(SECRET, u, 5)[:-3] + "AAA", id="tampered"),
        pytest.param(lambda u: "not.a.token", id="garbage"),
    ],
)
def test_bad_tokens_are_refused(make_token: Callable[[User], str]) -> None:
    user = User(id=7, username="u", password_hash="$argon2id$stored", role="viewer", active=True)
    token = make_token(user)
    with pytest.raises(Problem) as exc:
        read_access_token(SECRET, token)
    assert exc.value.status == 401
    assert exc.value.headers == {"WWW-Authenticate": "Bearer"}


def test_a_password_change_or_deactivation_ends_existing_tokens(db: Database, make_user: MakeUser) -> None:
    user = make_user("viewer")
    token = issue_access_token(SECRET, user, 5)
    with db.session() as s:
        s.execute(update(User).where(User.id == user.id).values(password_hash=hash_password("another-password")))
    with db.session() as s, pytest.raises(Problem) as exc:
        token_user(s, SECRET, token)
    assert exc.value.status == 401
    with db.session() as s:
        fresh = s.get(User, user.id)
        assert fresh is not None
        token = issue_access_token(SECRET, fresh, 5)
        fresh.active = False
    with db.session() as s, pytest.raises(Problem) as exc:
        token_user(s, SECRET, token)
    assert exc.value.status == 401


# --------------------------------------------------------------------------- API keys


def test_api_keys_are_stored_as_digests_only(db: Database) -> None:
    with db.session() as s:
        row, key = create_api_key(s, AccessPolicy(), name="trạm đo mưa", scopes=["alarms:raise", "alarms:raise"])
        key_id = row.id
    assert key.startswith(API_KEY_PREFIX)
    with db.session() as s:
        stored = s.get(ApiKey, key_id)
        assert stored is not None
        assert stored.scopes == ["alarms:raise"]
        assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
        secret_part = key.split("_", 2)[2]
        for value in (stored.name, stored.prefix, stored.key_hash, stored.created_by):
            assert secret_part not in value
        principal = api_key_principal(s, key)
        assert principal.kind == "apikey"
        assert principal.permissions == frozenset({"alarms:raise"})
        assert not principal.has("alarms:read")
        assert stored.last_used_at is not None


def test_api_keys_need_known_scopes(db: Database) -> None:
    for scopes in ([], ["alarms:fly"], ["*"], ["alarms:read", "nope"]):
        with db.session() as s, pytest.raises(Problem) as exc:
            create_api_key(s, AccessPolicy(), name="bad", scopes=scopes)
        assert (exc.value.status, exc.value.code) == (422, "bad-scope"), scopes


def test_api_key_agency_must_exist(db: Database) -> None:
    with db.session() as s, pytest.raises(Problem) as exc:
        create_api_key(s, AccessPolicy(), name="bad", scopes=["alarms:read"], agency_id="so-khong-co")
    assert exc.value.code == "unknown-agency"


def test_bad_revoked_and_malformed_api_keys_are_refused(db: Database) -> None:
    with db.session() as s:
        row, key = create_api_key(s, AccessPolicy(), name="cảm biến", scopes=["alarms:read"])
        key_id = row.id
    prefix_and_wrong_secret = key[: len(API_KEY_PREFIX) + 9] + "x" * 43
    candidates = [prefix_and_wrong_secret, "ioc_", "ioc_zzzzzzzz_abc", "abc", key + "x", "ioc_" + "a" * 300]
    with db.session() as s:
        for candidate in candidates:
            with pytest.raises(Problem) as exc:
                api_key_principal(s, candidate)
            assert exc.value.status == 401, candidate
        s.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=utcnow()))
    with db.session() as s, pytest.raises(Problem) as exc:
        api_key_principal(s, key)
    assert exc.value.status == 401


def test_last_used_is_not_rewritten_on_every_request(db: Database) -> None:
    with db.session() as s:
        row, key = create_api_key(s, AccessPolicy(), name="k", scopes=["alarms:read"])
        key_id = row.id
    with db.session() as s:
        api_key_principal(s, key)
    with db.session() as s:
        first = s.get(ApiKey, key_id).last_used_at  # type: ignore[union-attr]
    with db.session() as s:
        api_key_principal(s, key)
    with db.session() as s:
        assert s.get(ApiKey, key_id).last_used_at == first  # type: ignore[union-attr]
        stale = utcnow() - timedelta(hours=1)
        s.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=stale))
    with db.session() as s:
        api_key_principal(s, key)
    with db.session() as s:
        assert s.get(ApiKey, key_id).last_used_at > stale  # type: ignore[union-attr,operator]


# --------------------------------------------------------------------------- grants and scope


def _principal(permissions: set[str], *, agency_id: str | None = None, kind: str = "apikey") -> Principal:
    return Principal(kind=kind, id=f"{kind}:1", name="p", permissions=frozenset(permissions), agency_id=agency_id)


def test_nobody_grants_more_than_they_hold() -> None:
    policy = AccessPolicy()
    admin = _principal({"*"}, kind="user")
    manager = _principal({"users:write", "alarms:read", "events:read", "agencies:read"})
    check_may_grant(admin, policy.for_role(Role.ADMIN), None)
    check_may_grant(manager, policy.for_role(Role.VIEWER), None)
    for role in (Role.ADMIN, Role.OPERATOR):
        with pytest.raises(Problem) as exc:
            check_may_grant(manager, policy.for_role(role), None)
        assert exc.value.status == 403
        assert exc.value.code == "privilege-escalation"
    with pytest.raises(Problem):
        check_may_grant(manager, ["*"], None)


def test_a_scoped_manager_grants_only_inside_its_agency() -> None:
    scoped = _principal({"apikeys:write", "alarms:read"}, agency_id="so-nnmt")
    check_may_grant(scoped, ["alarms:read"], "so-nnmt")
    for agency in (None, "so-khcn"):
        with pytest.raises(Problem) as exc:
            check_may_grant(scoped, ["alarms:read"], agency)
        assert exc.value.code == "out-of-remit"


def test_scoped_principals_see_only_their_remit() -> None:
    ward = Principal(
        kind="user",
        id="user:1",
        name="w",
        permissions=frozenset(),
        role=Role.WARD_OFFICER,
        agency_id="ubnd-thanh-vinh",
        ward_code="16681",
    )
    assert ward.can_access(ward_code="16681", agency_id=None)
    assert not ward.can_access(ward_code="16690", agency_id="ubnd-thanh-vinh")
    assert not ward.can_access(ward_code=None, agency_id=None)
    officer = Principal(
        kind="user", id="user:2", name="a", permissions=frozenset(), role=Role.AGENCY_OFFICER, agency_id="so-nnmt"
    )
    assert officer.can_access(ward_code="16690", agency_id="so-nnmt")
    assert not officer.can_access(ward_code="16681", agency_id="so-khcn")
    # An officer without an agency (should never exist) sees nothing rather than everything.
    orphan = Principal(kind="user", id="user:3", name="o", permissions=frozenset(), role=Role.AGENCY_OFFICER)
    assert not orphan.can_access(ward_code=None, agency_id=None)
    operator = Principal(kind="user", id="user:4", name="op", permissions=frozenset(), role=Role.OPERATOR)
    assert operator.can_access(ward_code="16690", agency_id="so-khcn")


# --------------------------------------------------------------------------- throttling and input


def test_login_throttle_counts_per_client_and_username() -> None:
    throttle = LoginThrottle(per_minute=3)
    for _ in range(3):
        throttle.check("10.0.0.1", "admin")
    with pytest.raises(Problem) as exc:
        throttle.check("10.0.0.1", "ADMIN ")  # the same account, however it is typed
    assert exc.value.status == 429
    assert exc.value.headers is not None
    assert 1 <= int(exc.value.headers["Retry-After"]) <= 61
    throttle.check("10.0.0.2", "admin")
    throttle.check("10.0.0.1", "operator")


def test_login_throttle_forgets_idle_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    throttle = LoginThrottle(per_minute=3)
    monkeypatch.setattr(throttle, "PRUNE_ABOVE", 5)
    clock = [1000.0]
    monkeypatch.setattr("ioc.core.auth.time.monotonic", lambda: clock[0])
    for i in range(10):
        throttle.check("10.0.0.1", f"user{i}")
    clock[0] += 120
    throttle.check("10.0.0.1", "late")
    assert len(throttle) == 1


@pytest.mark.parametrize(
    "value",
    [
        "a\x00b",
        {"k": "v\x00"},
        {"k\x00": 1},
        float("nan"),
        [1.0, float("inf")],
        {"x": [{"y": float("-inf")}]},
    ],
)
def test_unstorable_values_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        check_storable(value)


def test_nesting_is_bounded() -> None:
    doc: object = 1
    for _ in range(MAX_JSON_DEPTH):
        doc = {"a": doc}
    check_storable(doc)
    with pytest.raises(ValueError, match="nested"):
        check_storable({"a": doc})
    check_storable({"text": "Cửa Lò — bình thường", "n": 1.5, "ok": True, "none": None, "list": [1, "a"]})
