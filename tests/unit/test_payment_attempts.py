"""Gateway timeouts and the record of every attempt, driven through fakes: no I/O."""

from functools import partial

import pytest

from contracts.envelope import Envelope
from contracts.events import OrderCancelled, PaymentFailed, PricedLine, StockReserved
from infra.clock import utc_now
from infra.messaging.errors import RetryLater
from payment_service import handlers as payment
from payment_service.adapters.timeout import TimedGateway
from payment_service.domain.model import AttemptOutcome, PaymentStatus
from payment_service.ports import GatewayUnavailable
from tests.builders import stock_reserved, wrapped
from tests.unit.fakes import FakeGateway, FakePayments, HangingGateway

pytestmark = pytest.mark.unit

RESERVED = stock_reserved(3, 250)


async def test_a_gateway_that_does_not_answer_in_time_is_unavailable() -> None:
    hanging = HangingGateway()
    with pytest.raises(GatewayUnavailable, match=r"within 0\.05 s"):
        await TimedGateway(hanging, timeout_s=0.05).charge("k", 1, "EUR", "tok_ok")
    assert hanging.calls == 1


async def test_a_timeout_is_retried_later_and_recorded_as_an_unavailable_attempt() -> None:
    payments = FakePayments()
    charge = partial(
        payment.on_stock_reserved,
        gateway=TimedGateway(HangingGateway(), timeout_s=0.05),
        payments=payments,
        clock=utc_now,
    )
    with pytest.raises(RetryLater, match="payment gateway unavailable"):
        await charge(wrapped(RESERVED), RESERVED)
    [attempt] = payments.attempts
    assert attempt.outcome is AttemptOutcome.UNAVAILABLE
    assert attempt.error is not None
    assert "0.05 s" in attempt.error
    assert (attempt.amount_cents, attempt.currency) == (750, "EUR")
    assert payments.payments == {}  # nothing settled: the retry decides


async def test_a_fast_answer_passes_through_the_deadline() -> None:
    gateway = FakeGateway()
    result = await TimedGateway(gateway, timeout_s=5).charge("k", 9, "EUR", "tok_ok")
    assert (result.approved, gateway.captures) == (True, {"k": 9})


async def test_every_attempt_is_recorded_and_the_payment_counts_them() -> None:
    payments = FakePayments()
    charge = partial(
        payment.on_stock_reserved,
        gateway=FakeGateway(failures_before_answer=2),
        payments=payments,
        clock=utc_now,
    )
    for _ in range(2):
        with pytest.raises(RetryLater):
            await charge(wrapped(RESERVED), RESERVED)
    await charge(wrapped(RESERVED), RESERVED)
    await charge(wrapped(RESERVED), RESERVED)  # a redelivery after settling: no new attempt
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


async def test_a_decline_is_one_attempt_and_a_payment_failed_with_the_reason() -> None:
    payments = FakePayments()
    await payment.on_stock_reserved(
        wrapped(RESERVED),
        RESERVED,
        gateway=FakeGateway(approve=False),
        payments=payments,
        clock=utc_now,
    )
    [attempt] = payments.attempts
    assert (attempt.outcome, attempt.decline_reason) == (AttemptOutcome.DECLINED, "card declined")
    settled = payments.payments["o-1"]
    assert (settled.status, payments.calls("o-1"), settled.reason) == (
        PaymentStatus.FAILED,
        1,
        "card declined",
    )
    [event] = settled.events
    assert isinstance(event, PaymentFailed)
    assert (event.reason, event.amount_cents) == ("card declined", 750)


async def test_a_cancelled_order_is_never_charged_after_the_void() -> None:
    gateway, payments = FakeGateway(), FakePayments()
    cancelled = OrderCancelled(order_id="o-9", customer_id="c-1", reason="changed my mind")
    await payment.on_order_cancelled(
        Envelope.wrap(cancelled, producer="test"), cancelled, payments=payments, gateway=gateway
    )
    reserved = StockReserved(
        order_id="o-9",
        customer_id="c-1",
        lines=[PricedLine(sku="SKU-1", quantity=1, unit_price_cents=500)],
        total_cents=500,
        payment_method="tok_ok",
    )
    await payment.on_stock_reserved(
        Envelope.wrap(reserved, producer="test"),
        reserved,
        gateway=gateway,
        payments=payments,
        clock=utc_now,
    )
    assert gateway.captures == {}
    assert gateway.refunds == {}  # nothing taken, nothing given back
    assert payments.payments["o-9"].status is PaymentStatus.VOIDED
