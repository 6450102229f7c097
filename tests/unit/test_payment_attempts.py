"""Gateway timeouts and the record of every attempt; the real handlers on the in-memory bus,
through fakes: no I/O."""

import pytest

from contracts.events import OrderCancelled, PaymentFailed, PricedLine, StockReserved
from contracts.topology import PAYMENT
from payment_service.adapters.timeout import TimedGateway
from payment_service.domain.model import AttemptOutcome, PaymentStatus
from payment_service.ports import GatewayUnavailable
from tests.builders import stock_reserved
from tests.unit.fakes import FakeGateway, HangingGateway
from tests.unit.services import payment_harness

pytestmark = pytest.mark.unit

RESERVED = stock_reserved(3, 250)


async def test_a_gateway_that_does_not_answer_in_time_is_unavailable() -> None:
    hanging = HangingGateway()
    with pytest.raises(GatewayUnavailable, match=r"within 0\.05 s"):
        await TimedGateway(hanging, timeout_s=0.05).charge("k", 1, "EUR", "tok_ok")
    assert hanging.calls == 1


async def test_a_timeout_is_retried_later_and_recorded_as_an_unavailable_attempt() -> None:
    payment = payment_harness(TimedGateway(HangingGateway(), timeout_s=0.05))
    payments = payment.deps.payments
    first = await payment.first_attempt(RESERVED)
    assert first.outcome == "retried"
    assert first.error is not None
    assert first.error.startswith("RetryLater: payment gateway unavailable")
    [attempt] = payments.attempts
    assert attempt.outcome is AttemptOutcome.UNAVAILABLE
    assert attempt.error is not None
    assert "0.05 s" in attempt.error
    assert (attempt.amount_cents, attempt.currency) == (750, "EUR")
    assert payments.payments == {}  # nothing settled: the retry decides
    # A gateway that never answers: every tier times out (0.05 s of real time each), then
    # the dead letter, with nothing settled and every attempt on record.
    await payment.bus.drain()
    assert payment.outcomes() == ["retried"] * 4 + ["dead_lettered"]
    [letter] = payment.dead_letters(StockReserved)
    assert letter.reason == "retries exhausted"
    assert [a.outcome for a in payments.attempts] == [AttemptOutcome.UNAVAILABLE] * 5
    assert payments.payments == {}


async def test_a_fast_answer_passes_through_the_deadline() -> None:
    gateway = FakeGateway()
    result = await TimedGateway(gateway, timeout_s=5).charge("k", 9, "EUR", "tok_ok")
    assert (result.approved, gateway.captures) == (True, {"k": 9})


async def test_every_attempt_is_recorded_and_the_payment_counts_them() -> None:
    payment = payment_harness(FakeGateway(failures_before_answer=2))
    payments = payment.deps.payments
    envelope = await payment.receive(RESERVED)
    await payment.redeliver(envelope)  # a redelivery after settling: no new attempt
    assert payment.outcomes() == ["retried", "retried", "acked", "acked"]
    assert [a.outcome for a in payments.attempts] == [
        AttemptOutcome.UNAVAILABLE,
        AttemptOutcome.UNAVAILABLE,
        AttemptOutcome.APPROVED,
    ]
    assert payments.attempts[-1].gateway_reference == "ch-order-o-1"
    settled = payments.payments["o-1"]
    assert (settled.status, payments.calls("o-1"), settled.amount_cents) == (
        PaymentStatus.SUCCEEDED,
        3,
        750,
    )
    assert settled.gateway_reference == "ch-order-o-1"
    assert [e.event_type for e in payment.bus.published if e.producer == PAYMENT] == [
        "PaymentSucceeded"
    ]


async def test_a_decline_is_one_attempt_and_a_payment_failed_with_the_reason() -> None:
    payment = payment_harness(FakeGateway(approve=False))
    payments = payment.deps.payments
    await payment.receive(RESERVED)
    [attempt] = payments.attempts
    assert (attempt.outcome, attempt.decline_reason) == (AttemptOutcome.DECLINED, "card declined")
    settled = payments.payments["o-1"]
    assert (settled.status, payments.calls("o-1"), settled.reason) == (
        PaymentStatus.FAILED,
        1,
        "card declined",
    )
    [event] = payments.published
    assert isinstance(event, PaymentFailed)
    assert (event.reason, event.amount_cents) == ("card declined", 750)
    assert payment.outcomes() == ["acked"]


async def test_a_cancelled_order_is_never_charged_after_the_void() -> None:
    gateway = FakeGateway()
    payment = payment_harness(gateway)
    await payment.receive(
        OrderCancelled(order_id="o-9", customer_id="c-1", reason="changed my mind")
    )
    reserved = StockReserved(
        order_id="o-9",
        customer_id="c-1",
        lines=[PricedLine(sku="SKU-1", quantity=1, unit_price_cents=500)],
        total_cents=500,
        payment_method="tok_ok",
    )
    await payment.receive(reserved)
    assert gateway.captures == {}
    assert gateway.refunds == {}  # nothing taken, nothing given back
    assert payment.deps.payments.payments["o-9"].status is PaymentStatus.VOIDED
    assert payment.outcomes() == ["acked", "acked"]
