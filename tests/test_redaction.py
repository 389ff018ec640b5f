"""Redaction by name and by shape, and how objects are shown: by their type and
public fields, with the same redaction, and never by a memory address."""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import re
import types
from typing import Any, NamedTuple

import pytest

from otel_runnables import _conventions as conventions
from otel_runnables import _redaction
from otel_runnables._redaction import REDACTED, scrub_text
from otel_runnables._serialization import (
    DEFAULT_LIMITS,
    EncodingLimits,
    encode_json,
    encode_value,
    to_jsonable,
)

ADDRESS = re.compile(r"at 0x[0-9a-fA-F]+")
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkFubiJ9"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
SHAPED = {
    "bearer": "Bearer abc123DEF456ghi789",
    "basic": "Basic dXNlcjpodW50ZXIy",
    "openai": "sk-proj-Ab3dEf6hIj9kLm2nOp5q",
    "anthropic": "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4",
    "jwt": JWT,
    "github": "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "google": "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "slack": "xoxb-123456789012-abcdefABCDEF",
    "stripe": "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "private key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
}


def secret_part(shaped: str) -> str:
    """The part of a shaped secret that must not survive (a scheme word may)."""
    return shaped.split()[-1] if shaped.startswith(("Bearer", "Basic")) else shaped


def name_is_secret(name: str) -> bool:
    return _redaction.name_check(DEFAULT_LIMITS.key_patterns())(name)


@pytest.mark.parametrize(
    "name",
    [
        "password", "PASSWORD", "db_password", "passwd", "pwd", "mysql_pwd", "passphrase", "pass",
        "secret", "client_secret", "token", "access_token", "refreshToken", "auth", "Authorization",
        "x-auth-token", "oauth", "bearer", "credentials", "private", "private_key", "privateKey",
        "api_key", "apiKey", "X-Api-Key", "OPENAI_API_KEY", "openai_key", "openAIKey", "secret_key",
        "session", "session_id", "cookie", "Set-Cookie", "ssn", "social_security_number",
        "credit_card", "creditCardNumber", "csrf_token", "x_xsrf", "jwt",
    ],
)  # fmt: skip
def test_secret_names_are_redacted(name: str) -> None:
    assert name_is_secret(name)
    assert to_jsonable({name: "v"})[0] == {name: REDACTED}


@pytest.mark.parametrize(
    "name",
    ["user", "author", "authors", "authored_by", "max_tokens", "total_tokens", "tokenizer", "key",
     "monkey", "lesson", "passport", "step", "query", "name"],
)  # fmt: skip
def test_ordinary_names_are_kept(name: str) -> None:
    assert not name_is_secret(name)


@pytest.mark.parametrize(("kind", "shaped"), SHAPED.items())
def test_secret_shapes_are_redacted_anywhere_in_text(kind: str, shaped: str) -> None:
    text = f"calling the API with {shaped} now"
    scrubbed = scrub_text(text)
    assert secret_part(shaped) not in scrubbed and REDACTED in scrubbed, kind
    assert scrubbed.startswith("calling the API with ") and scrubbed.endswith(" now")
    # wherever a string is: a value, a key, a list item, a cut string, an exception message
    for value in ({"note": text}, {text: 1}, [text], ValueError(text), "x" * 100 + text):
        encoded = encode_value(value, EncodingLimits(max_value_length=120))
        assert secret_part(shaped)[:12] not in encoded.text, (kind, value)


def test_url_passwords_and_schemes_keep_what_is_not_secret() -> None:
    assert scrub_text("postgres://ann:hunter2@db:5432/app") == f"postgres://ann:{REDACTED}@db:5432/app"
    assert scrub_text("Authorization: Bearer abc123DEF456") == f"Authorization: Bearer {REDACTED}"


def test_prose_is_left_alone() -> None:
    for text in (
        "a basic understanding of bearer instruments",
        "the token count was 1200 and the session lasted an hour",
        "ask-me-anything about the key and the password policy",
        "https://example.com/path?q=1",
    ):
        assert scrub_text(text) == text


def test_a_secret_cut_in_two_leaves_no_head() -> None:
    shaped = SHAPED["openai"]
    for cut in range(1, len(shaped)):
        text = "x" * (100 - cut) + " " + shaped  # the cut falls inside the key
        encoded = encode_value({"note": text}, EncodingLimits(max_value_length=120, max_items=10))
        assert shaped[:10] not in encoded.text


class Login(NamedTuple):
    user: str
    password: str


@dataclasses.dataclass
class Settings:
    region: str
    passphrase: str


class Model:
    """pydantic-like."""

    def model_dump(self) -> dict[str, Any]:
        return {"model": "m", "openai_key": "k-1"}


class Service:
    def __init__(self) -> None:
        self.region = "eu"
        self.api_key = "k-2"
        self._cache = {"hidden": "h"}
        self.items = [1, 2]


class Slotted:
    __slots__ = ("name", "pwd", "_private")

    def __init__(self) -> None:
        self.name, self.pwd, self._private = "n", "p-1", "x"


class Bare:
    pass


def test_objects_are_their_type_and_public_fields_with_redaction() -> None:
    value = {
        "login": Login("ann", "hunter2"),
        "settings": Settings("eu", "open sesame"),
        "model": Model(),
        "namespace": types.SimpleNamespace(user="ann", password="hunter2"),
        "service": Service(),
        "slotted": Slotted(),
        "headers": [("Authorization", "Bearer abc123DEF456"), ("Accept", "json")],
        "pair": ("password", "hunter2"),
    }
    plain, truncated = to_jsonable(value)
    assert not truncated
    assert plain == {
        "login": {"user": "ann", "password": REDACTED},
        "settings": {"region": "eu", "passphrase": REDACTED},
        "model": {"model": "m", "openai_key": REDACTED},
        "namespace": {"__type__": "SimpleNamespace", "user": "ann", "password": REDACTED},
        "service": {"__type__": "Service", "region": "eu", "api_key": REDACTED, "items": [1, 2]},
        "slotted": {"__type__": "Slotted", "name": "n", "pwd": REDACTED},
        "headers": [["Authorization", REDACTED], ["Accept", "json"]],
        "pair": ["password", REDACTED],
    }


class AttrsLike:
    """What attrs classes declare: their fields, in order, as ``__attrs_attrs__``."""

    __attrs_attrs__ = (types.SimpleNamespace(name="user"), types.SimpleNamespace(name="bearer"))

    def __init__(self) -> None:
        self.user, self.bearer, self.other = "ann", "t-1", "not a field"


def test_attrs_classes_are_their_fields() -> None:
    assert to_jsonable(AttrsLike())[0] == {"user": "ann", "bearer": REDACTED}


def test_no_memory_address_is_ever_written() -> None:
    def local() -> None: ...

    class WithRepr:
        def __repr__(self) -> str:
            return f"<WithRepr at {hex(id(self))}>"

    values = [
        Bare(),
        object(),
        local,
        print,
        functools.partial(print, 1),
        [].append,
        WithRepr(),
        Bare,
        {"x": Bare()},
    ]
    for value in values:
        encoded = encode_value(value)
        assert not ADDRESS.search(encoded.text), encoded.text
    assert to_jsonable(Bare())[0] == "<tests.test_redaction.Bare>"
    assert to_jsonable(local)[0].startswith("<function test_no_memory_address_is_ever_written.")  # type: ignore[union-attr]


def test_object_fields_are_bounded() -> None:
    wide = types.SimpleNamespace(**{f"f{index}": index for index in range(1000)})
    plain, truncated = to_jsonable(wide, EncodingLimits(max_items=5))
    assert truncated and len(plain) == 6  # type: ignore[arg-type]
    deep: Any = Bare()
    node = deep
    for _ in range(100):
        node.child = Bare()
        node = node.child
    encoded = encode_value(deep)
    assert encoded.truncated and json.loads(encoded.text)
    loop = types.SimpleNamespace()
    loop.me = loop
    assert to_jsonable(loop) == ({"__type__": "SimpleNamespace", "me": "<cycle>"}, True)


def test_event_data_objects_are_flattened_like_mappings() -> None:
    attributes = conventions.custom_event_attributes(Login("ann", "hunter2"), capture_content=True)
    assert attributes["otel_runnables.event.data.user"] == "ann"
    assert attributes["otel_runnables.event.data.password"] == REDACTED
    text, _, flat = encode_json(collections.OrderedDict(step=1), DEFAULT_LIMITS, "p")
    assert (text, flat) == ('{"step":1}', {"p.step": 1})
