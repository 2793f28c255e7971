"""Error types shared by every part of accelwrap, and the one "did you mean" helper.

Every user-facing error names the key, the value received and the valid choices.
``suggest`` is the single place that turns a bad name into a list of close matches.

Example:
    >>> suggest('Adamw', ['Adam', 'AdamW', 'SGD'])
    "did you mean 'AdamW' or 'Adam'?"
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def suggest(name: str, choices: Iterable[str], n: int = 3, list_all: bool = True) -> str:
    """Return a short "did you mean ..." phrase, or the list of choices when none is close.

    Args:
        name: The name the user gave.
        choices: Every valid name.
        n: How many close matches to name at most.
        list_all: When nothing is close, list the valid names (False: say that none is
            close, for choices that are not a vocabulary, such as parameter names).

    Returns:
        A phrase such as ``"did you mean 'AdamW'?"``; when nothing is close, the
        (possibly shortened) list of valid names.

    Example:
        >>> suggest('lr_mul', ['lr_mult', 'decay_mult'])
        "did you mean 'lr_mult'?"
        >>> suggest('zzz', ['a', 'b'])
        "valid names are 'a', 'b'"
    """
    choices = sorted(set(choices))
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(repr(lowered[c]) for c in close) + "?"
    if not list_all:
        return "no name is close to it"
    if not choices:
        return "nothing is registered"
    shown = ", ".join(repr(c) for c in choices[:20])
    more = f" and {len(choices) - 20} more" if len(choices) > 20 else ""
    return f"valid names are {shown}{more}"


class SentenceKeyError(KeyError):
    """A ``KeyError`` that prints its message as a sentence, not as a quoted key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RegistryError(SentenceKeyError):
    """A registry lookup or registration problem (a ``KeyError``, as in MMEngine)."""


# Errors that are accelwrap's type and MMEngine's at once: where MMEngine raises
# ``AssertionError`` or ``KeyError`` for a bad argument, accelwrap raises the more
# precise ``ValueError``/``TypeError`` that is *also* MMEngine's type, so ``except``
# clauses written for either keep working.
class ValueAssertionError(ValueError, AssertionError):
    """A bad value that MMEngine checks with ``assert``.

    Example:
        >>> issubclass(ValueAssertionError, ValueError), issubclass(
        ...     ValueAssertionError, AssertionError)
        (True, True)
    """


class TypeAssertionError(TypeError, AssertionError):
    """An argument of the wrong type that MMEngine checks with ``assert``."""


class ValueKeyError(ValueError, SentenceKeyError):
    """A bad value for which MMEngine raises ``KeyError`` (a missing key, a bad name)."""


class TypeKeyError(TypeError, SentenceKeyError):
    """A missing or wrong-typed entry for which MMEngine raises ``KeyError``."""


class UnknownTypeError(RegistryError, TypeError):
    """A ``type`` name that is not in a registry; the message lists close matches.

    Also a ``TypeError``: what MMEngine raises for an unknown optimizer ``type``.
    """


class TypeAttributeError(TypeError, AttributeError):
    """An argument of the wrong type on which MMEngine fails with ``AttributeError``
    (e.g. a model given where an optimizer is expected)."""


class ConfigError(ValueError):
    """One report listing every problem found in a configuration.

    Args:
        problems: One sentence per problem, each naming the key and the value.

    Example:
        >>> err = ConfigError(['optimizer.lr: expected a number, got "fast"'])
        >>> print(err)
        1 problem in the configuration:
          - optimizer.lr: expected a number, got "fast"
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{count} {noun} in the configuration:"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed (incomplete, from another model, unreadable)."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint file that is missing, truncated, changed or unreadable.

    Attributes:
        checkpoint: The checkpoint folder.
        file: The damaged file, relative to the folder (``'latest'`` for the pointer).
        reason: What is wrong with it, e.g. ``'is truncated: 3 of 1024 bytes'``.

    Example:
        >>> err = DamagedCheckpointError('ckpts/iter_4', 'optimizer.bin', 'is missing')
        >>> print(err)
        checkpoint 'ckpts/iter_4' is damaged: optimizer.bin is missing
    """

    def __init__(self, checkpoint: object, file: str, reason: str) -> None:
        self.checkpoint, self.file, self.reason = str(checkpoint), file, reason
        super().__init__(f"checkpoint {self.checkpoint!r} is damaged: {file} {reason}")


class CheckpointWriteError(CheckpointError):
    """A checkpoint that could not be written (disk full, permission denied, ...).

    The message is one line: the file or folder, the free space, the checkpoint that stays.
    """


class LaunchError(RuntimeError):
    """A launch that would silently misbehave (e.g. N processes that each train alone)."""


class NonFiniteError(RuntimeError):
    """An update with a NaN/inf gradient norm or loss under ``nonfinite.policy='stop'``.

    Attributes:
        update: The update number (1-based) that was refused.
        iteration: The wrapper's counter (``inner_count``) at that update.
    """

    def __init__(self, message: str, update: int, iteration: int) -> None:
        super().__init__(message)
        self.update = update
        self.iteration = iteration
