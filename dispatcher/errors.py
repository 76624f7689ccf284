"""The dispatcher's own errors. Library exceptions are translated into these at each adapter.

    DispatcherError                 base of everything raised on purpose
    +-- ConfigError                 bad config: stops start-up, names file, field and problem
    +-- DecodeError                 an event that cannot be decoded: it goes to the DLQ
    +-- KafkaUnavailableError       the broker cannot be reached or refuses us
    +-- DeliveryError               a delivery could not be carried out (not an HTTP outcome)
        +-- RecordRefused           the producer would not queue a record (too large, queue full)

HTTP outcomes (timeouts, 5xx, ...) are values (`model.HttpResult`), not exceptions: they
are expected and classified, never raised.
"""

from __future__ import annotations


class DispatcherError(Exception):
    """Base of every error the dispatcher raises on purpose."""

    retriable: bool = False


class ConfigError(DispatcherError):
    """A config file that cannot be used. One error, one line: `file: field: problem`."""

    def __init__(self, path: str, field: str, problem: str) -> None:
        self.path = path
        self.field = field  # dotted, with list indexes: "endpoints[2].url"; "" for the file
        self.problem = problem
        where = f"{path}: {_one_line(field)}" if field else path
        super().__init__(f"{where}: {_one_line(problem)}")


# Control characters as escapes: a field name comes from the user's input (an API body's
# key may hold a newline) and the message must stay one line.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(32), 127]}


def _one_line(text: str) -> str:
    return text.translate(_ESCAPES)


class DecodeError(DispatcherError):
    """A source event that cannot be decoded; `reason` is short and human ("missing field 'id'")."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class KafkaUnavailableError(DispatcherError):
    """The brokers cannot be reached, or refuse the request, within the allowed time."""

    retriable = True


class DeliveryError(DispatcherError):
    """A delivery could not be attempted or recorded (e.g. its retry record was not acked)."""


class RecordRefused(DeliveryError):
    """The producer would not even queue a record (too large, local queue full)."""
