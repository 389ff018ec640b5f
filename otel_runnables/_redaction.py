"""What never leaves the process: values under secret-looking names, and
secret-shaped text inside any string.

Names (dict keys, object fields, namedtuple fields, the first item of a pair
such as ``("Authorization", "Bearer …")``) are read in snake_case (``X-Api-Key``,
``apiKey`` and ``API_KEY`` all read ``…api_key``) and searched for each pattern,
a regular expression. The default patterns take Logfire's scrubbing defaults
as the reference (password, passwd, mysql_pwd, secret, auth but not author,
credential, private key, api key, session, cookie, social security, credit
card; csrf, xsrf, jwt and ssn as whole words) and add token (not the
``tokens`` counts LLM payloads carry), pwd, passphrase, pass, bearer, private
and any name ending in ``_key``. ``OTEL_RUNNABLES_REDACT_KEYS`` replaces them,
or adds to them with a leading ``+``.

Text: bearer and basic credentials, ``sk-…`` style API keys, JWTs, GitHub,
GitLab, Slack, AWS, Google and Stripe key shapes, private key blocks and the
password in ``scheme://user:password@host`` are replaced wherever they appear
in a string, exception messages included. Over-redacting is preferred to
leaking.
"""

from __future__ import annotations

import functools
import re

__all__ = ["DEFAULT_KEY_PATTERNS", "REDACTED", "NameCheck", "name_check", "scrub_text", "snake_case"]

REDACTED = "[REDACTED]"

DEFAULT_KEY_PATTERNS: tuple[str, ...] = (
    r"passw(?:or)?d",
    r"passphrase",
    r"(?:^|_)pass(?:_|$)",
    r"pwd",
    r"secret",
    r"token(?!s(?:_|$)|iz)",
    r"auth(?!ors?(?:_|$)|ored)",
    r"bearer",
    r"credential",
    r"private",
    r"api_?key",
    r"_key(?:_|$)",
    r"session",
    r"cookie",
    r"social_?security",
    r"credit_?card",
    r"(?:^|_)(?:csrf|xsrf|jwt|ssn)(?:_|$)",
)

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[^a-z0-9]+")
# names repeat run after run: each is decided once (long ones every time, so none is pinned)
_CACHED_NAME_LENGTH = 256
_CACHED_NAMES = 4096


def snake_case(name: str) -> str:
    return _SEPARATORS.sub("_", _CAMEL_BOUNDARY.sub("_", name).lower())


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regular expression for a list of name patterns (None: nothing is secret).
    A pattern that is not a valid regular expression is matched as plain text."""
    parts = []
    for pattern in patterns:
        text = pattern.replace("-", "_")
        try:
            re.compile(text)
        except re.error:
            text = re.escape(text)
        parts.append(f"(?:{text})")
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


class NameCheck:
    """``check(name)``: whether a value called ``name`` is withheld."""

    __slots__ = ("_pattern", "_known")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self._pattern = _compile(patterns)
        self._known: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        known = self._known.get(name)
        if known is None:
            pattern = self._pattern
            known = pattern is not None and pattern.search(snake_case(name)) is not None
            if len(name) <= _CACHED_NAME_LENGTH:
                if len(self._known) >= _CACHED_NAMES:
                    self._known.clear()
                self._known[name] = known
        return known


_last_check: tuple[tuple[str, ...], NameCheck] = ((), NameCheck(()))


def name_check(patterns: tuple[str, ...]) -> NameCheck:
    """The check for ``patterns``, built once for the patterns in use."""
    global _last_check
    known, check = _last_check
    if known is not patterns:
        check = _checks(patterns)
        _last_check = (patterns, check)
    return check


@functools.lru_cache(maxsize=64)
def _checks(patterns: tuple[str, ...]) -> NameCheck:
    return NameCheck(patterns)


# (literals one of which the text must hold, the shape): the literals are looked
# for first, in one pass, since one regular expression of every shape costs
# ~1 ms per 8 KB. No class crosses a '"' or a '\', so scrubbing JSON text
# keeps it JSON.
_SHAPES: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = tuple(
    (markers, re.compile(shape))
    for markers, shape in (
        # an Authorization header's credentials (with a digit or symbol: not prose)
        (
            ("earer", "EARER", "asic", "ASIC"),
            r"(?P<keep>\b(?:[Bb]earer|BEARER|[Bb]asic|BASIC)\s+)(?=[A-Za-z]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,}",
        ),
        (("sk-",), r"\bsk-[A-Za-z0-9_-]{16,}"),  # OpenAI, Anthropic (sk-ant-…) and look-alikes
        (("eyJ",), r"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*"),  # a JWT
        (("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), r"\b(?:gh[pousr]|github_pat)_\w{20,}"),
        (("k_live_", "k_test_"), r"\b[rsp]k_(?:live|test)_[0-9A-Za-z]{16,}"),  # Stripe
        (("glpat-",), r"\bglpat-[A-Za-z0-9_-]{20,}"),
        (("xox",), r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
        (("AKIA", "ASIA"), r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
        (("AIza",), r"\bAIza[0-9A-Za-z_-]{35}"),
        (("PRIVATE KEY",), r'-----BEGIN[A-Z ]* PRIVATE KEY-+[^"]*?(?:-+END[A-Z ]* PRIVATE KEY-+|(?=")|$)'),
        (("://",), r'(?P<keep>://[^/\s:@"\\]+:)[^/\s@"\\]+(?=@)'),  # scheme://user:password@host
    )
)
# one substring test each: cheaper than one regular expression of them all
_MARKERS = tuple(marker for markers, _ in _SHAPES for marker in markers)
# no secret shape is shorter than this
_SHORTEST_SECRET = 12


def _replacement(match: re.Match[str]) -> str:
    kept = match.groupdict().get("keep")
    return REDACTED if kept is None else kept + REDACTED


def scrub_text(text: str) -> str:
    """``text`` with every secret-shaped part replaced by ``[REDACTED]``."""
    if len(text) < _SHORTEST_SECRET:
        return text
    for marker in _MARKERS:
        if marker in text:
            break
    else:
        return text
    for markers, shape in _SHAPES:
        for marker in markers:
            if marker in text:
                text = shape.sub(_replacement, text)
                break
    return text
