"""The one exception type users see: the CLI prints its message on one line and exits 2."""


class FastAdvError(Exception):
    """A user-facing error: bad input, bad config, bad or missing file.

    The message must name the offending value and, where there is a fixed set,
    the valid choices.
    """


def unknown_choice(kind: str, value, choices) -> FastAdvError:
    """Build the standard 'unknown X' error listing the valid choices."""
    return FastAdvError(f"unknown {kind} {value!r}; valid: {', '.join(sorted(map(str, choices)))}")
