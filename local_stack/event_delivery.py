"""EventBridge rules with Lambda targets, delivered on this machine.

moto's EventBridge matches events against a rule's pattern and delivers to SQS queues, log groups and other buses,
but raises NotImplementedError for a Lambda target. :class:`LocalEventDelivery` replaces moto's
``Rule.send_to_targets`` while it is installed: a matching event's Lambda targets are invoked asynchronously (each in
a thread of its own, as EventBridge invokes Lambda with the Event invocation type,
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-targets.html), through the local Lambda runtime, with the
event as EventBridge sends it; the other targets go to moto as before. Every delivery is recorded for tests.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moto.events.models import Rule
from moto.utilities.arns import parse_arn

logger = logging.getLogger(__name__)

_MOTO_SEND_TO_TARGETS = Rule.send_to_targets
Invoke = Callable[[str, Any], str | None]
"""``invoke(function_arn, event)``: runs the function; returns its error type, or None when it succeeded."""


@dataclass(frozen=True)
class Delivery:
    """One event handed to one Lambda target."""

    rule_name: str
    function_arn: str
    event: dict[str, Any]
    error: str | None


class LocalEventDelivery:
    """While installed, moto's rules deliver to Lambda targets through ``invoke``."""

    _install_lock = threading.Lock()
    _installed: LocalEventDelivery | None = None

    def __init__(self, invoke: Invoke) -> None:
        self._invoke = invoke
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._in_flight: set[threading.Thread] = set()
        self._accepting = False

    def install(self) -> None:
        with LocalEventDelivery._install_lock:
            if LocalEventDelivery._installed is not None:
                raise RuntimeError("a LocalEventDelivery is already installed in this process; uninstall it first")
            delivery = self

            def send_to_targets(rule: Rule, original_event: dict[str, Any], transform_input: bool = True) -> None:
                delivery._send_to_targets(rule, original_event, transform_input)

            Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]
            LocalEventDelivery._installed = self
            self._accepting = True

    def uninstall(self, timeout: float = 30.0) -> None:
        """Stops delivering and waits (up to ``timeout``) for the deliveries in flight."""
        with LocalEventDelivery._install_lock:
            if LocalEventDelivery._installed is self:
                Rule.send_to_targets = _MOTO_SEND_TO_TARGETS  # type: ignore[method-assign]
                LocalEventDelivery._installed = None
        with self._lock:
            self._accepting = False
            threads = list(self._in_flight)
        for thread in threads:
            thread.join(timeout)

    @property
    def deliveries(self) -> tuple[Delivery, ...]:
        """The finished deliveries, in the order they finished."""
        with self._lock:
            return tuple(self._deliveries)

    def _send_to_targets(self, rule: Rule, original_event: dict[str, Any], transform_input: bool) -> None:
        if rule.state == "DISABLED" or not rule.event_pattern.matches_event(original_event):
            return  # moto's own send_to_targets delivers for disabled rules too
        lambda_targets = [target for target in rule.targets if parse_arn(target["Arn"]).service == "lambda"]
        others = [target for target in rule.targets if target not in lambda_targets]
        if others:
            rest = copy.copy(rule)
            rest.targets = others
            _MOTO_SEND_TO_TARGETS(rest, original_event, transform_input)
        for target in lambda_targets:
            event = copy.deepcopy(original_event)
            thread = threading.Thread(
                target=self._deliver, args=(rule.name, target["Arn"], event), name=f"event-{rule.name}", daemon=True
            )
            with self._lock:
                if not self._accepting:
                    logger.warning("event for %s dropped: the local cloud is stopping", rule.name)
                    continue
                self._in_flight.add(thread)
            thread.start()

    def _deliver(self, rule_name: str, function_arn: str, event: dict[str, Any]) -> None:
        error: str | None
        try:
            error = self._invoke(function_arn, event)
        except Exception as failure:  # noqa: BLE001 - a delivery that cannot run is recorded, as EventBridge would
            error = f"{type(failure).__name__}: {failure}"
        with self._lock:
            self._deliveries.append(Delivery(rule_name, function_arn, event, error))
            self._in_flight.discard(threading.current_thread())
        if error is not None:
            logger.info("event delivery %s -> %s failed: %s", rule_name, function_arn, error)
