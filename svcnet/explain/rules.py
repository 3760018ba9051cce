"""Tokenize one iptables rule (the text after `-A CHAIN`) into matches and a target.

Accepts both what kube-proxy writes into `iptables-restore` (`-m tcp -p tcp -d 10.0.0.1`,
`--comment ns/svc:p`, `--mark 0x4000/0x4000`) and what `iptables-save` prints back
(`-d 10.0.0.1/32 -p tcp -m tcp`, `-m comment --comment "a b"`), including `!` negation before
an option, the legacy `-s ! x` form, long option names and unquoted multi-word comments (as in
kube-proxy's own tracer test data). The engine never needs the model: a rule is just options.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

BUILTIN = ""  # module name of the built-in options (-s, -d, -p, -i, -o, -f)
NEGATE = "!"

# Long forms of the built-in options, normalised to the short form.
_BUILTIN_ALIASES = {
    "--source": "-s", "--src": "-s", "--destination": "-d", "--dst": "-d",
    "--protocol": "-p", "--in-interface": "-i", "--out-interface": "-o", "--fragment": "-f",
    "--jump": "-j", "--goto": "-g", "--match": "-m",
}
_BUILTIN_OPTS = frozenset({"-s", "-d", "-p", "-i", "-o", "-f"})
_NO_VALUE_BUILTINS = frozenset({"-f"})
# Options that take no value even when a non-option word follows.
_FLAG_OPTS = frozenset({"--rcheck", "--update", "--set", "--remove", "--reap", "--rsource", "--rdest",
                        "--random", "--random-fully", "--persistent", "--syn", "--rttl"})
_PROTO_MODULES = frozenset({"tcp", "udp", "sctp", "udplite", "dccp"})


class RuleError(ValueError):
    """A rule that cannot be tokenized; the message names the problem."""


@dataclass(frozen=True, slots=True)
class Match:
    """One match condition: `module` ('' for built-ins), `option`, negation and its value(s)."""

    module: str
    option: str
    negated: bool
    values: tuple[str, ...] = ()

    @property
    def value(self) -> str:
        return " ".join(self.values)

    def text(self) -> str:
        """The condition as iptables would print it (for explanations)."""
        neg = "! " if self.negated else ""
        val = " ".join(_quote(v) for v in self.values)
        return f"{neg}{self.option} {val}".rstrip()


@dataclass(frozen=True, slots=True)
class Rule:
    """A parsed rule. `target` is '' for rules without `-j`/`-g` (they only count packets)."""

    text: str
    matches: tuple[Match, ...]
    target: str = ""
    target_args: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (option, values) after -j
    goto: bool = False

    def target_opt(self, option: str) -> str | None:
        """The value of a target option (e.g. `--to-destination`), '' for flags, None if absent."""
        for opt, vals in self.target_args:
            if opt == option:
                return " ".join(vals)
        return None

    def find(self, module: str, option: str) -> Match | None:
        for m in self.matches:
            if m.module == module and m.option == option:
                return m
        return None


def _quote(arg: str) -> str:
    return f'"{arg}"' if not arg or any(ch.isspace() for ch in arg) else arg


def _is_option(word: str) -> bool:
    return word.startswith("-") and len(word) > 1 and not word[1:].replace(".", "").isdigit()


def parse_rule(text: str) -> Rule:
    """Tokenize rule arguments (without `-A CHAIN`); raises RuleError on malformed input."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise RuleError(f"cannot split rule: {exc}") from None
    matches: list[Match] = []
    target = ""
    goto = False
    target_args: list[tuple[str, tuple[str, ...]]] = []
    module = BUILTIN
    in_target = False
    negate_next = False
    i = 0
    while i < len(words):
        word = words[i]
        if word == NEGATE:
            if negate_next:
                raise RuleError("'!' given twice")
            negate_next = True
            i += 1
            continue
        if not _is_option(word):
            raise RuleError(f"unexpected word {word!r}")
        opt = _BUILTIN_ALIASES.get(word, word)
        i += 1
        if opt == "-m":
            if i >= len(words):
                raise RuleError("'-m' without a module name")
            module = words[i]
            in_target = False
            i += 1
            continue
        if opt in ("-j", "-g"):
            if i >= len(words):
                raise RuleError(f"'{opt}' without a target")
            if target:
                raise RuleError("more than one target")
            target, goto, in_target = words[i], opt == "-g", True
            i += 1
            continue
        # Legacy `-s ! 10.0.0.0/8`.
        if i < len(words) and words[i] == NEGATE and opt in _BUILTIN_OPTS:
            negate_next = True
            i += 1
        values, i = _take_values(words, i, opt)
        if in_target and opt not in _BUILTIN_OPTS:
            target_args.append((opt, values))
        else:
            # `-p tcp --dport 80` without `-m tcp` loads the protocol's module implicitly.
            owner = BUILTIN if opt in _BUILTIN_OPTS else (module or _implicit_module(matches, opt))
            if opt in ("-s", "-d", "-p", "-i", "-o") and not values:
                raise RuleError(f"option {opt} needs a value")
            matches.append(Match(owner, opt, negate_next, values))
        negate_next = False
    if negate_next:
        raise RuleError("'!' at the end of the rule")
    return Rule(text=text, matches=tuple(matches), target=target, target_args=tuple(target_args), goto=goto)


def _implicit_module(matches: list[Match], opt: str) -> str:
    for m in matches:
        if m.option == "-p" and m.values and m.values[0].lower() in _PROTO_MODULES:
            return m.values[0].lower()
    raise RuleError(f"option {opt} outside a match module")


def _take_values(words: list[str], i: int, opt: str) -> tuple[tuple[str, ...], int]:
    if opt in _FLAG_OPTS or opt in _NO_VALUE_BUILTINS:
        return (), i
    values: list[str] = []
    while i < len(words) and not _is_option(words[i]) and words[i] != NEGATE:
        values.append(words[i])  # several words: `--match-set NAME src`, `--tcp-flags M C`, comments
        i += 1
    return tuple(values), i


def rule_text(chain: str, args: str) -> str:
    """`-A CHAIN args`, as shown in explanations."""
    return f"-A {chain} {args}".rstrip()
