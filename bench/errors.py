"""Errors that mean "the user asked for something wrong": the CLI prints them and exits 2."""


EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input (unknown name, bad option, missing or corrupt data). Exit code 2."""


def choose(kind: str, name: str, choices, context: str = "") -> None:
    """Raise a UsageError naming the valid choices when `name` is not among them."""
    choices = sorted(choices)
    if name not in choices:
        where = f" {context}" if context else ""
        raise UsageError(f"unknown {kind} {name!r}{where}; choose one of: {', '.join(choices) or '(none)'}")
