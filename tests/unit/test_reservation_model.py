import pytest

from contracts.events import OrderPlaced, StockReservationFailed, StockReserved
from inventory_service.domain.model import Reservation, ReservationStatus, StockItem
from tests.builders import order_placed

pytestmark = pytest.mark.unit

STOCK = {
    "SKU-1": StockItem("SKU-1", "Mug", 250, available=5),
    "SKU-2": StockItem("SKU-2", "Cap", 1000, available=1),
}


def order(*lines: tuple[str, int]) -> OrderPlaced:
    return order_placed(*lines)


def test_reserves_all_lines_priced_from_the_catalog() -> None:
    reservation = Reservation.decide(order(("SKU-1", 2), ("SKU-2", 1)), STOCK)
    assert reservation.status is ReservationStatus.RESERVED
    assert reservation.total_cents == 2 * 250 + 1000
    [event] = reservation.events
    assert isinstance(event, StockReserved)
    assert event.total_cents == 1500
    assert event.payment_method == "tok_ok"
    assert [(p.sku, p.quantity, p.unit_price_cents) for p in event.lines] == [
        ("SKU-1", 2, 250),
        ("SKU-2", 1, 1000),
    ]


def test_one_short_line_fails_the_whole_order() -> None:
    reservation = Reservation.decide(order(("SKU-1", 2), ("SKU-2", 2)), STOCK)
    assert reservation.status is ReservationStatus.FAILED
    assert reservation.lines == []
    [event] = reservation.events
    assert isinstance(event, StockReservationFailed)
    assert event.sku == "SKU-2"
    assert "requested 2, available 1" in event.reason


def test_lines_naming_one_sku_are_decided_on_their_sum() -> None:
    # 3 + 3 of SKU-1 against 5: each line alone would fit, together they do not.
    reservation = Reservation.decide(order(("SKU-1", 3), ("SKU-1", 3)), STOCK)
    assert reservation.status is ReservationStatus.FAILED
    assert reservation.reason == "insufficient stock for SKU-1: requested 6, available 5"
    together = Reservation.decide(order(("SKU-1", 3), ("SKU-1", 2)), STOCK)
    assert together.status is ReservationStatus.RESERVED
    assert together.total_cents == 5 * 250


def test_unknown_sku_fails_with_its_name() -> None:
    reservation = Reservation.decide(order(("SKU-9", 1)), STOCK)
    assert reservation.status is ReservationStatus.FAILED
    assert reservation.reason == "unknown SKU SKU-9"


def test_release_gives_the_lines_back_once() -> None:
    reservation = Reservation.decide(order(("SKU-1", 3)), STOCK)
    returned = reservation.release("payment failed")
    assert [(line.sku, line.quantity) for line in returned] == [("SKU-1", 3)]
    assert reservation.status is ReservationStatus.RELEASED
    assert reservation.release("again") == []


def test_a_failed_reservation_has_nothing_to_release() -> None:
    reservation = Reservation.decide(order(("SKU-9", 1)), STOCK)
    assert reservation.release("payment failed") == []
    assert reservation.status is ReservationStatus.FAILED
