"""Masking of secrets, keys and balances before anything is logged or stored.

Two entry points, after seed 001's ``mask_sensitive``:

* :func:`mask_text` rewrites free text (log lines, error messages, reprs, URLs, JSON, headers,
  env-style ``KEY=value`` lines);
* :func:`mask_value` walks JSON-like structures (dicts, lists, tuples): the value of a sensitive
  key becomes :data:`MASK` whatever its type (numbers too: balances), except ``None``,
  booleans and ``""``, which reveal nothing; every other string goes through :func:`mask_text`.

Both are pure, never raise on odd input, are idempotent (masking masked text changes nothing)
and run in time linear in the size of their input: every pattern below either has a bounded
length or is anchored on a literal and scans with possessive quantifiers, so no input (a
megabyte of ``[A-Za-z0-9_.-]``, thousands of unclosed quotes) can make them backtrack. Workers
mask task arguments before they record anything, so a slow mask would freeze a worker.

What is masked is decided by two tables, :data:`KEY_RULES` and :data:`VALUE_RULES`.

**Key rules** (:func:`is_sensitive_key`). A key is split into lower-case words at ``_``, ``-``,
``.``, spaces and camelCase humps (``X-Api-Key`` -> ``x api key``, ``accessToken`` -> ``access
token``). The rules are tried in this order and the first that applies decides:

==========  =========  ==========================================================================
rule        decides    applies when
==========  =========  ==========================================================================
``exact``   secret     the whole key is one of the terms (``krw``, ``btc``: balances per currency,
                       as seed 001 masks them; ``foreign_net_krw`` is a flow, readable)
``query``   secret     as ``exact``, but only for a parameter of a URL query string (``?key=``,
                       ``&sig=``), where these short names are credentials
``phrase``  secret     the last word, or the last two words joined, is a term (``api_key``,
                       ``x-api-key``, ``session_id``, ``serviceKey``)
``tail``    readable   the last word says the value is *about* a secret, not the secret: a count,
                       a date, a type, a version, a name (``token_count``, ``max_tokens``,
                       ``prompt_tokens``, ``balance_date``, ``auth_type``, ``access_key_id``)
``word``    secret     any word is a term (``password``, ``access_token``, ``krw_balance``,
                       ``flower_basic_auth``, ``cookie``, ``authorization``, ``prompt``)
``suffix``  secret     any word ends with a term (``dbpassword``, ``bottoken``, ``appsecret``)
``phrase``  secret     any word, or two adjacent words joined, is a phrase term (``gemini_api_key``)
(none)      readable   anything else (``tokens_in``, ``order_imbalance``, ``routing_key``)
==========  =========  ==========================================================================

Plurals are different words on purpose: ``token`` is a credential, ``tokens`` a count.

**Value rules** (:func:`mask_text`), applied in the order of :data:`VALUE_RULES` (each masks
the span of its ``secret`` group and keeps the rest), then the ``pair`` step:

* ``url_password``: the password of a URL's user info, ``scheme://user:PASSWORD@host``. A
  password may itself hold ``/``, ``@`` or ``:``: everything between ``://user:`` and the *last*
  ``@`` of the URL (which ends at white space or a quote) is masked;
* ``bearer`` / ``basic``: ``Bearer <token>`` anywhere, and ``Basic <base64>`` when the
  credential looks encoded (a digit, ``+/=`` or a lower-to-upper hump, so "Basic
  authentication" stays readable);
* ``google_api_key`` (``AIza`` + 35), ``github_token`` (``ghp_`` + 36 and kin),
  ``quantbeat_api_key`` (the secret part of ``qb_<prefix>_<secret>``): known shapes, masked
  wherever they appear;
* ``pair``: ``key=value``, ``key: value``, ``"key": "value"``, ``--key=value``, ``?key=value&``
  whose key is sensitive by the key rules. The value is a quoted string (JSON escapes
  understood), a ``[...]`` or ``{...}`` without nesting, or a run up to white space or one of
  ``,;&}])"'``. An ``Authorization: Token abc`` value keeps its scheme word (``Bearer``,
  ``Basic``, ``Token``, ...). Values that reveal nothing are left as they are: empty,
  ``true``/``false``/``none``/``null``, and the mask itself.

Limits, by design: a key longer than 64 characters is not a key; an unquoted value ends at white
space, so ``prompt: summarise the news`` masks only ``summarise`` (quote it, or pass it in a
mapping, where :func:`mask_value` masks it whole); a secret that is neither named by its key
nor shaped like a known token cannot be recognised; in ``scheme://u:p@host/path@x`` the path up
to its last ``@`` is masked with the password.

Speed: the pair step finds pairs from their separator on the reversed text, and a regex
prefilter derived from :data:`KEY_RULES` lets only keys that may be sensitive reach Python.
Text whose keys repeat (JSON, query strings, argument dumps: a few dozen distinct keys) is
masked without Python work per pair: each distinct key is decided once and one regex built
from the decisions splits the text around the values to mask (``_mask_pairs``); other text
takes a loop that costs about 1.5 us of Python per masked value. Both give the same result.
``benchmarks/masking.py`` measures 1 MiB inputs.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal

MASK: Final = "***"

# --- the key table --------------------------------------------------------------------------

KeyRuleKind = Literal["exact", "query", "tail", "word", "suffix", "phrase"]


@dataclass(frozen=True)
class KeyRule:
    """One row of :data:`KEY_RULES`: how ``terms`` are compared with a key's words and what a
    match decides (``sensitive``); ``why`` documents the row."""

    kind: KeyRuleKind
    terms: tuple[str, ...]
    sensitive: bool
    why: str


#: The key table (see the module docstring for the order in which rules apply). Terms are
#: lower case; a ``phrase`` term is words joined by ``_`` (``api_key`` also matches ``apikey``,
#: ``apiKey`` and ``X-API-KEY``).
KEY_RULES: Final[tuple[KeyRule, ...]] = (
    KeyRule(
        "exact",
        ("krw", "btc"),
        True,
        "account balances per currency, as seed 001 masks them (foreign_net_krw stays readable)",
    ),
    KeyRule(
        "query",
        ("key", "sig", "signature"),
        True,
        "URL query parameters that carry API keys and request signatures (?key=AIza...)",
    ),
    KeyRule(
        "phrase",
        (
            "api_key",
            "app_key",
            "app_secret",
            "access_key",
            "private_key",
            "secret_key",
            "service_key",
            "signing_key",
            "client_key",
            "encryption_key",
            "master_key",
            "session_id",
            "session_key",
        ),
        True,
        "two words that name a credential together (either alone does not)",
    ),
    KeyRule(
        "tail",
        (
            "count",
            "counts",
            "tokens",
            "date",
            "time",
            "at",
            "ts",
            "type",
            "kind",
            "version",
            "id",
            "ids",
            "len",
            "length",
            "size",
            "limit",
            "ttl",
            "timeout",
            "expiry",
            "expires",
            "name",
            "path",
            "file",
            "url",
            "method",
            "scheme",
            "status",
            "error",
        ),
        False,
        "the last word describes the secret (its count, date, type, name...), not its value",
    ),
    KeyRule(
        "word",
        (
            "password",
            "passwd",
            "passphrase",
            "pass",
            "pw",
            "pwd",
            "secret",
            "secrets",
            "token",
            "jwt",
            "credential",
            "credentials",
            "cookie",
            "cookies",
            "authorization",
            "auth",
            "balance",
            "prompt",
        ),
        True,
        "words that name a secret, a credential, a money balance or an AI prompt",
    ),
    KeyRule(
        "suffix",
        ("password", "passwd", "secret", "token", "apikey"),
        True,
        "the same words run together with a prefix (dbpassword, bottoken, clientsecret)",
    ),
)

# camelCase humps and acronyms: "XAPIKey" -> X API Key, "accessToken" -> access Token.
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[^\W_A-Za-z0-9]+")


def _terms(kind: KeyRuleKind) -> frozenset[str]:
    return frozenset(
        term.replace("_", "") if kind == "phrase" else term
        for rule in KEY_RULES
        if rule.kind == kind
        for term in rule.terms
    )


_EXACT = _terms("exact")
_QUERY = _terms("query")
_PHRASES = _terms("phrase")
_TAILS = _terms("tail")
_WORDS = _terms("word")
_SUFFIXES = tuple(sorted(_terms("suffix")))


def key_words(key: str) -> list[str]:
    """The lower-case words of ``key`` as the key rules see them (``"X-Api-Key"`` ->
    ``["x", "api", "key"]``). Linear in ``len(key)``."""
    return [w.lower() for w in _WORD.findall(key)]


@lru_cache(maxsize=4096)
def _decide(key: str, in_query: bool) -> bool:
    words = key_words(key)
    if not words:
        return False
    whole = "_".join(words)
    if whole in _EXACT or (in_query and whole in _QUERY):
        return True
    last = words[-1]
    if last in _PHRASES or (len(words) > 1 and words[-2] + last in _PHRASES):
        return True
    if last in _TAILS:
        return False
    for i, word in enumerate(words):
        if word in _WORDS or word in _PHRASES or word.endswith(_SUFFIXES):
            return True
        if i and words[i - 1] + word in _PHRASES:
            return True
    return False


def is_sensitive_key(key: str, *, in_query: bool = False) -> bool:
    """True when a mapping key (or the key of a ``key=value`` pair) names a secret, a
    credential or a balance, by :data:`KEY_RULES`. ``in_query`` adds the rules for URL query
    parameters. Never raises; linear in ``len(key)``."""
    if len(key) > 256:  # not cached: a huge key would pin memory in the cache
        return _decide.__wrapped__(key, in_query)
    return _decide(key, in_query)


# --- the value table ------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueRule:
    """One row of :data:`VALUE_RULES`: a pattern whose ``secret`` group is masked."""

    name: str
    pattern: re.Pattern[str]
    why: str


# A URL ends at white space, a quote or an angle bracket; its user info at ':', '/' or '@'.
_URL_STOP = r"\s\"'<>`"
# Characters of an identifier run: a key, or part of one.
_KEYCHAR = r"\w.\-"

VALUE_RULES: Final[tuple[ValueRule, ...]] = (
    ValueRule(
        "url_password",
        re.compile(rf"://[^{_URL_STOP}:/@]*+:(?P<secret>[^{_URL_STOP}]*+)"),
        "scheme://user:PASSWORD@host; the password runs to the URL's last '@'",
    ),
    ValueRule(
        "bearer",
        re.compile(
            r"earer(?<=[Bb]earer)(?<![\w.\-].earer)[ \t]++"
            r"(?P<secret>[A-Za-z0-9._~+/=\-]{8,}+)"
        ),
        "an OAuth bearer token anywhere in text (Bearer or bearer, anchored on 'earer')",
    ),
    ValueRule(
        "basic",
        re.compile(
            r"Basic(?<![\w.\-]Basic)[ \t]++"
            r"(?=[A-Za-z0-9+/]*?(?:[0-9+/=]|[a-z][A-Z]))"
            r"(?P<secret>[A-Za-z0-9+/]{8,}+={0,2}+)(?![\w.~+/=\-*])"
        ),
        "HTTP Basic credentials (base64 of user:password)",
    ),
    ValueRule(
        "google_api_key",
        re.compile(r"(?P<secret>AIza[0-9A-Za-z_\-]{35})"),
        "Google API keys (Gemini): AIza and 35 characters",
    ),
    ValueRule(
        "github_token",
        re.compile(r"(?P<secret>gh(?<![A-Za-z0-9]gh)[pousr]_[A-Za-z0-9]{36})"),
        "GitHub personal, OAuth, server and refresh tokens",
    ),
    ValueRule(
        "quantbeat_api_key",
        re.compile(r"qb(?<![A-Za-z0-9]qb)_[0-9a-f]{10}_(?P<secret>[A-Za-z0-9_\-]{32,64}+)"),
        "quantbeat API keys: qb_<public prefix>_<secret> (the prefix stays readable)",
    ),
)


def _alternation(words: Iterable[str], *, fold: bool) -> str:
    """A regex matching any of ``words`` as a trie (``tok(?:en|ens)``), so the engine tests
    one character class per letter instead of every word in turn; ``fold`` matches ASCII
    letters in either case."""
    tree: dict[str, set[str]] = {}
    for word in words:
        tree.setdefault(word[:1], set()).add(word[1:])
    branches = []
    for head, rests in sorted(tree.items()):
        if not head:
            continue
        cls = f"[{head.lower()}{head.upper()}]" if fold and head.isalpha() else re.escape(head)
        rest = _alternation((r for r in rests if r), fold=fold)
        optional = "?" if "" in rests else ""
        branches.append(f"{cls}(?:{rest}){optional}" if rest else cls)
    return "|".join(branches)


def _pair_prefilter() -> str:
    """The part of :data:`_PAIR_REVERSED` that decides, at C speed, which keys may be sensitive,
    reading the reversed text from the key's last character. Derived from :data:`KEY_RULES` so
    the two cannot drift apart, and a superset of :func:`is_sensitive_key` (a test checks it).

    It skips keys whose last word is a ``tail`` word (unless that word ends a ``phrase``, as in
    ``session_id``), and keys in which no word *ends* with a sensitive term: the whole word
    for ``exact``/``word`` terms, the word's end for ``suffix`` terms, a phrase's last word
    (``api_key``, ``apikey``). Word ends are where :func:`key_words` ends a word: before a
    character that is not ``[a-z]``, or at the key's end; in the reversed key, the term is
    tried only there, after a possessive skip of lower-case letters. Python decides the rest.
    """
    ends: set[str] = set()
    for rule in KEY_RULES:
        if rule.sensitive and rule.kind != "query":
            ends.update(t.split("_")[-1] if rule.kind == "phrase" else t for t in rule.terms)
    query = {t for rule in KEY_RULES if rule.kind == "query" for t in rule.terms}
    tails = {t for rule in KEY_RULES if rule.kind == "tail" for t in rule.terms}
    # Tail words in the spellings whose word boundary the regex sees as key_words does: lower
    # or UPPER after a separator or at the key's start, Capitalised after anything ...
    end = rf"(?:[_.\-]|(?![{_KEYCHAR}]))"
    lower = _alternation((t[::-1] for t in tails), fold=False)
    upper = _alternation((t.upper()[::-1] for t in tails), fold=False)
    capital = _alternation((t.capitalize()[::-1] for t in tails), fold=False)
    tail = rf"(?:{lower}){end}|(?:{upper}){end}|(?:{capital})"
    # ... unless the phrase rule, which comes first, takes the last two words (session_id).
    guard = "|".join(
        rf"{_alternation([words[1][::-1]], fold=True)}[_.\-]?"
        rf"{_alternation([words[0][::-1]], fold=True)}"
        for rule in KEY_RULES
        if rule.kind == "phrase"
        for words in (term.split("_") for term in rule.terms)
        if words[-1] in tails
    )
    skip = rf"(?!{guard})(?:{tail})" if guard else tail
    term = _alternation((t[::-1] for t in ends), fold=True)
    first = "".join(sorted({c for t in ends for c in (t[-1].lower(), t[-1].upper())}))
    term = rf"(?=[{first}])(?:{term})"
    not_lower = r"(?:[^\Wa-z]|[.\-])"
    return (
        rf"(?!{skip})"
        rf"(?:(?=(?:{_alternation((t[::-1] for t in query), fold=True)})[?&;])"
        rf"|(?=(?:(?!{term})[a-z]*+{not_lower}){{0,64}}+{term}))"
    )


# Pairs are found backwards: the scan runs over the reversed text and starts only at a
# separator ('=' or ':', a prefix the regex engine skips to at C speed), then reads the
# (reversed) optional quote and the key, at most 64 characters, and only matches when the
# prefilter lets the key through. So a pair costs Python work only when its key may be
# sensitive, and a run without separators costs nothing but the skip. Every run is bounded or
# possessive: nothing backtracks over more than a key.
_PAIR_REVERSED = re.compile(
    rf"[=:](?<!//:)[ \t]*+[\"']?+{_pair_prefilter()}"
    rf"(?P<key>[{_KEYCHAR}]{{1,64}}+)(?![{_KEYCHAR}])"  # checked in Python: [--]letter...
)
_KEY_START = frozenset(string.ascii_letters + "_")
# The value after a separator (read forwards); the one group that takes part is what gets
# masked: the inside of a quoted string (JSON escapes understood), a [...] or {...} without
# nesting, or a run (after an auth scheme word, which is kept: "Authorization: Token x").
# A quoted string whose closing quote is missing (a truncated sample, a cut log line) runs to
# the end of its line.
_VALUE = re.compile(
    r"""
    [ \t]*+
    (?:
        "([^"\\\n]*+(?:\\.[^"\\\n]*+)*+\\?+)(?:"|(?=\n)|\Z)
      | '([^'\\\n]*+(?:\\.[^'\\\n]*+)*+\\?+)(?:'|(?=\n)|\Z)
      | (\[[^\[\]\n]*+\]|\{[^{}\n]*+\})
      | (?:(?i:bearer|basic|token|digest|negotiate|jwt)[ \t]++)?+([^\s,;&}\])"']++)
    )
    """,
    re.VERBOSE,
)
#: Values that reveal nothing (also in quotes): left as they are.
_HARMLESS = frozenset({"", MASK, "true", "false", "none", "null"})


def _mask_pairs_loop(text: str) -> str:
    """The pair step, one candidate at a time in Python (the reference: :func:`_mask_pairs`
    takes its C-speed route only where that gives the same result)."""
    n = len(text)
    parts: list[str] = []
    done = 0  # text[:done] is in parts
    covered = 0  # the end of the last masked value, closing quote included
    decide = _decide
    for match in reversed(list(_PAIR_REVERSED.finditer(text[::-1]))):  # in the text's order
        sep = n - 1 - match.start()
        if sep + 1 < covered:
            # Inside a value masked already: its own value ends where that one does. A key
            # whose separator ends the masked value ("token= Authorization: Token x") still
            # has its value masked.
            continue
        rstart, rend = match.span(1)
        raw = text[n - rend : n - rstart]
        key = raw.lstrip("-")  # --api-key=...
        if key[:1] not in _KEY_START or len(raw) - len(key) > 2:
            continue
        in_query = rend < n and text[n - rend - 1] in "?&;"
        if not decide(key, in_query):
            continue
        value = _VALUE.match(text, sep + 1)
        if value is None:
            continue
        start, end = value.span(value.lastindex or 0)
        if end - start <= 5 and text[start:end].lower() in _HARMLESS:
            continue
        parts += (text[done:start], MASK)
        done, covered = end, value.end()
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


# --- the pair step at C speed ------------------------------------------------------------------
#
# Python work per candidate (about 1.5 us in the loop above) dominates text dense with
# secrets. The fast route does the same step in regex scans, with no Python per candidate:
#
# 1. ``_PAIR_FORMS`` lists the *forms* of candidates on the reversed text: separator, quote and
#    blanks, key (the *body*), and the ``?``/``&``/``;`` before the key if any. All the loop
#    decides about a candidate (the prefilter of ``_PAIR_REVERSED``, the key checks,
#    :func:`_decide`) depends on its body and on whether a query character precedes it, so
#    each distinct body is decided once (:func:`_bodies`): the prefilter by one ``findall``
#    over the bodies joined, the rest in Python. The first guess takes the bodies of the last
#    ``_SAMPLE_CHARS`` characters only.
# 2. :func:`_masking_pattern` builds, for the sensitive bodies, one regex that starts at a
#    separator, recognises the body with fixed-width lookbehinds and reads the value with the
#    grammar of ``_VALUE`` (a value that reveals nothing does not match). ``split`` returns the
#    text between matches (a closing quote starts the next piece) and the kept parts of each
#    match (separator; blanks and opening quote; scheme word); MASK takes the place of the
#    value by slice assignment, and one ``join`` builds the result. A second branch marks a
#    separator after a key character, quote or blank whose body is not among the guessed
#    ones: then step 1 runs on the whole text and step 2 again.
#
# A match consumes its value, so a separator inside a masked value is skipped, as the loop's
# ``covered`` skips it, with one exception: the loop still handles a separator that is the
# *last* character of a masked run ("token=Authorization: Token x"). A run that ends with the
# separator of a sensitive body is marked too, and then, or with more than ``_MAX_FORMS``
# sensitive bodies or ``_MAX_KNOWN`` bodies in all, the loop does the step instead.

_RUN = r"[^\s,;&}\])\"']"  # a character of an unquoted value
_PAIR_FORMS = re.compile(
    # separator, blanks, quote, key (up to 64 characters), query character
    rf"[=:](?<!//:)[ \t]*+[\"']?+[{_KEYCHAR}]{{1,64}}+(?![{_KEYCHAR}])[?&;]?"
)
# The same candidates, only those whose key passes the prefilter of _PAIR_REVERSED.
_PREFILTERED_FORMS = re.compile(
    rf"[=:](?<!//:)[ \t]*+[\"']?+{_pair_prefilter()}[{_KEYCHAR}]{{1,64}}+(?![{_KEYCHAR}])[?&;]?"
)
_FORM = re.compile(rf"[=:][ \t]*+[\"']?+([{_KEYCHAR}]++)([?&;]?)")
#: Sensitive bodies at most in the fast route's regex, bodies in all, and the characters
#: (from the end) whose candidates make the first guess of the text's bodies.
_MAX_FORMS = 16
_MAX_KNOWN = 64
_SAMPLE_CHARS = 1 << 16
# What _HARMLESS holds, as the loop tests it (``value.lower() in _HARMLESS``): only ASCII
# letters lower to these words, so explicit classes say the same (``(?i)`` would also take
# the long s for an s).
_HARMLESS_RE = r"(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[Nn][Oo][Nn][Ee]|[Nn][Uu][Ll][Ll]|\*\*\*)"
# A run (at least one character, checked before), its last separator apart: group 3 when its
# form is sensitive (the lookbehinds of the forms are filled in by _masking_pattern).
_RUN_BODY = (
    r"[^\s,;&}\])\"'=:]*+(?:[=:](?=[^\s,;&}\])\"'])[^\s,;&}\])\"'=:]*+)*+"
    r"(?:(?=[=:])(?:([=:]){forms}|[=:]))?+"
)
_DQ = r'[^"\\\n]*+(?:\\.[^"\\\n]*+)*+'
_SQ = r"[^'\\\n]*+(?:\\.[^'\\\n]*+)*+"
# After the separator, as _VALUE reads it. Group 1 (kept): separator, blanks, opening quote;
# group 2 (kept): the scheme word of a run; group 3: the separator that ends a run, when its
# form is sensitive (the text takes the loop). The value itself is left out of ``split``.
# The auth scheme words of _VALUE, after a cheap look at the first letter.
_SCHEME = r"(?=(?i:[btdnj]))(?i:bearer|basic|token|digest|negotiate|jwt)"
_BRACKETS = r"\[[^\[\]\n]*+\]|\{[^{}\n]*+\}"
_VALUE_PARTS = (
    r"(?:(?<==)|(?!//))[ \t]*+"
    rf"(?:(?=[^\"'])|\"(?!{_HARMLESS_RE}?(?:\"|\n|\Z))(?={_DQ}\\?+(?:\"|\n|\Z))"
    rf"|'(?!{_HARMLESS_RE}?(?:'|\n|\Z))(?={_SQ}\\?+(?:'|\n|\Z))))"
    r"(?:"
    # The most common value first: a run without separators that starts with no scheme word,
    # no word that reveals nothing, no bracket (what the next branch would match too, more
    # slowly). The branches exclude each other by the characters before and at the value's
    # start, so the order does not change which one matches.
    rf"(?<![\"'])(?![\[{{TtFfNn*])(?!(?i:[btdnj]))[^\s,;&}}\])\"'=:]++(?![=:])"
    # A run, after a scheme word, or from a bracket that does not close on its line.
    rf"|(?<![\"'])(?:(?=[^\"'\[{{])((?:{_SCHEME}[ \t]++)?+)"
    rf"(?:(?![TtFfNn*])|(?!{_HARMLESS_RE}(?!{_RUN})))|(?=[\[{{])(?!{_BRACKETS}))"
    rf"(?={_RUN}){_RUN_BODY}"
    # A quoted value whose closing quote is missing runs to the end of its line (as _VALUE).
    rf"|(?<=\"){_DQ}\\?+"
    rf"|(?<='){_SQ}\\?+"
    rf"|{_BRACKETS}"
    r")"
)


@lru_cache(maxsize=256)
def _bodies(forms: frozenset[str]) -> tuple[frozenset[tuple[str, bool, bool]], frozenset[str]]:
    """For candidate ``forms`` (matches of ``_PAIR_FORMS``): their sensitive *bodies*, each as
    (the text from the key to the separator, whether the loop masks the value when no query
    character precedes the key, whether it does when one does), and all their bodies."""
    bodies = {form.rstrip("?&;") for form in forms}  # a key holds none of these
    # Bodies hold no newline, so joined by newlines each is read on its own; the prefilter
    # only asks whether a query character follows the (reversed) key.
    passing = set(_PREFILTERED_FORMS.findall("\n".join(b + q for b in bodies for q in ("", "&"))))
    sensitive = set()
    for body in bodies:
        parsed = _FORM.fullmatch(body)
        if parsed is None:  # cannot happen: _PAIR_FORMS matched it
            continue
        raw = parsed[1][::-1]
        key = raw.lstrip("-")
        if key[:1] not in _KEY_START or len(raw) - len(key) > 2:
            continue
        plain = body in passing and _decide(key, False)
        query = body + "&" in passing and _decide(key, True)
        if plain or query:
            sensitive.add((body[::-1], plain, query))
    return frozenset(sensitive), frozenset(body[::-1] for body in bodies)


def _lookbehind(body: str, *, after: str) -> str:
    """A regex true just after ``body`` (key to separator) where the key is whole and the
    character before it is not in ``after``."""
    text = re.escape(body)
    return rf"(?<={text})(?<![{after}]{text})"


@lru_cache(maxsize=256)
def _masking_pattern(
    sensitive: frozenset[tuple[str, bool, bool]], known: frozenset[str] | None
) -> re.Pattern[str]:
    """The regex of step 2 for these sensitive bodies (see above); with ``known`` bodies, a
    second branch sets group 4 at a separator that may end a key whose body is not known."""
    alternatives = []
    for body, plain, query in sorted(sensitive):
        if plain and query:  # the key starts the text or follows no key character
            alternatives.append(_lookbehind(body, after=_KEYCHAR))
        elif plain:  # ... nor a query character
            alternatives.append(_lookbehind(body, after=_KEYCHAR + "?&;"))
        else:
            alternatives.append(rf"(?<=[?&;]{re.escape(body)})")
    last = "".join(sorted({re.escape(body[-2]) for body, _, _ in sensitive}))
    at = rf"(?<=[{last}][=:])(?:{'|'.join(alternatives)})" if sensitive else "(?!)"
    unknown = "(?!)"
    if known is not None:
        bodies = "|".join(_lookbehind(body, after=_KEYCHAR) for body in sorted(known))
        unknown = rf"(?<=[{_KEYCHAR}\"' \t][=:])" + (f"(?!{bodies})" if bodies else "")
    # The separator comes first and outside the groups, so the engine skips to separators
    # at C speed; groups 1 and 5 take it back from lookbehinds.
    return re.compile(
        rf"[=:](?:(?<=([=:])){at}("
        + _VALUE_PARTS.replace("{forms}", at)
        + rf"|(?<=([=:])){unknown})"
    )


def _mask_pairs(text: str) -> str:
    """The pair step (see the module docstring): the fast route where it gives the loop's
    result, else :func:`_mask_pairs_loop`."""
    forms = set(_PAIR_FORMS.findall(text[-_SAMPLE_CHARS:][::-1]))
    if len(forms) > _MAX_KNOWN:  # keys of many shapes: few repeat, the loop does as well
        return _mask_pairs_loop(text)
    complete = len(text) <= _SAMPLE_CHARS
    while True:
        sensitive, known = _bodies(frozenset(forms))
        if len(sensitive) > _MAX_FORMS or len(known) > _MAX_KNOWN:
            return _mask_pairs_loop(text)
        if complete and not sensitive:
            return text
        pieces = _masking_pattern(sensitive, None if complete else known).split(text)
        # pieces: text, separator, blanks and opening quote, scheme word, run-ending separator,
        # separator of an unknown body, text, ... (None for a part that is not there)
        count = len(pieces) // 6
        if not count:
            return text
        if any(pieces[5::6]):  # a key the sample did not show
            forms = set(_PAIR_FORMS.findall(text[::-1]))
            complete = True
            continue
        if any(pieces[4::6]):
            return _mask_pairs_loop(text)
        pieces[4::6] = [MASK] * count  # after the kept parts, in the value's place
        return "".join(filter(None, pieces))


def _url_password_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Where the passwords are in ``text[start:end]``, the rest of a URL after ``://user:``:
    up to its last ``@``; none for ``http://host:8080/x``. A URL nested before that ``@``
    (``?next=redis://:pw@h``, ``redis://:a@h1,redis://:b@h2``) owns it when it has user info
    of its own: then its password is masked, and the text before it is searched again. Each
    character is looked at a bounded number of times."""
    spans: list[tuple[int, int]] = []
    while (at := text.rfind("@", start, end)) >= 0:
        inner = text.rfind("://", start, at)
        colon = text.find(":", inner + 3, at) if inner >= 0 else -1
        user = text[inner + 3 : colon] if colon >= 0 else "/"
        if "/" in user or "@" in user:
            spans.append((start, at))
            break
        spans.append((colon + 1, at))
        end = inner
    return spans[::-1]


def _apply(rule: ValueRule, text: str) -> str:
    parts: list[str] = []
    done = 0
    for match in rule.pattern.finditer(text):
        spans = [match.span("secret")]
        if rule.name == "url_password":
            spans = _url_password_spans(text, *spans[0])
        for start, end in spans:
            if start >= end or text[start:end] == MASK:
                continue
            parts += (text[done:start], MASK)
            done = end
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def mask_text(text: str) -> str:
    """Return ``text`` with URL passwords, tokens, known key shapes and the values of
    sensitive ``key=value`` pairs replaced by :data:`MASK` (see the module docstring).

    Linear in ``len(text)``; never raises; ``mask_text(mask_text(t)) == mask_text(t)``.
    """
    if not text:
        return text
    for rule in VALUE_RULES:
        text = _apply(rule, text)
    return _mask_pairs(text)


def mask_value(value: Any) -> Any:
    """Return a copy of a JSON-like value with sensitive entries masked.

    Mappings keep their keys; the value of a sensitive key (:func:`is_sensitive_key`) becomes
    ``"***"`` whatever its type, except values that reveal nothing and are kept so a replay
    still works: ``None``, booleans and the empty string. Strings go through
    :func:`mask_text`; lists and tuples become lists of masked items; other scalars are
    returned unchanged. Never raises on JSON-like input.
    """
    if isinstance(value, Mapping):
        masked: dict[Any, Any] = {}
        for key, item in value.items():
            if (
                isinstance(key, str)
                and is_sensitive_key(key)
                and item is not None
                and not isinstance(item, bool)
                and item != ""
            ):
                masked[key] = MASK
            else:
                masked[key] = mask_value(item)
        return masked
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value
