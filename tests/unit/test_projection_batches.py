"""Which events a snapshot projection's catch-up applies from a batch of heads."""

from services.invoicing.projections.invoice_list import InvoiceList
from shared.eventstore import Checkpoint, EventHead
from shared.projections import _latest_positions


def head(txid: int, position: int, stream: str, version: int, event_type: str = "invoice.updated") -> EventHead:
    return EventHead(Checkpoint(txid, position), stream, event_type, version)


def test_each_streams_highest_version_is_applied_even_when_it_is_read_first():
    # inv_a's version 3 was committed by a transaction that took its id early: it is read before
    # version 2, whose snapshot is older. The older one must not be what the row ends as.
    heads = [head(10, 7, "inv_a", 3), head(11, 6, "inv_a", 2), head(12, 8, "inv_b", 1), head(13, 9, "inv_b", 2)]
    assert _latest_positions(InvoiceList(), heads) == [7, 9]


def test_events_the_projection_does_not_read_never_win():
    heads = [head(10, 1, "inv_a", 1), head(11, 2, "inv_a", 2, "credit_note.created")]
    assert _latest_positions(InvoiceList(), heads) == [1]
