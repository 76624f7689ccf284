"""The demo's one error."""


class DemoError(Exception):
    """One clear line: what went wrong, and what to do when there is something to do."""
