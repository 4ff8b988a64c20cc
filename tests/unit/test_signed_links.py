"""Signed links: rotation through a key list, expiry carried by the token, refusals never crash."""

import time

import pytest
from itsdangerous import TimestampSigner

from services.invoicing.api import pdf
from services.invoicing.settings import Settings
from shared import paylinks, signing
from shared.errors import Refused
from shared.http_errors import status_of


def test_the_newest_key_signs_and_every_listed_key_verifies():
    old = signing.sign("k-old", "invoice-pdf", "m")
    rotated = "k-new,k-old"
    assert signing.sign(rotated, "invoice-pdf", "m") == signing.sign("k-new", "invoice-pdf", "m")
    assert signing.verify(rotated, "invoice-pdf", "m", old)  # links signed before the rotation
    assert not signing.verify("k-new", "invoice-pdf", "m", old)  # until the old key is dropped
    assert not signing.verify(rotated, "pay-link", "m", signing.sign(rotated, "invoice-pdf", "m"))  # purpose


@pytest.mark.parametrize("garbage", ["", "é", "²", "0" * 500, "a.b.c", "\x00"])
def test_malformed_signatures_are_refused_not_raised(garbage):
    assert not signing.verify("k", "invoice-pdf", "m", garbage)
    assert paylinks.problem("k", "inv_1", garbage) == "invalid"


def test_pay_links_expire(monkeypatch):
    now = time.time()
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(now - paylinks.TTL_S - 60))
    old = paylinks.signature("k", "inv_1")
    monkeypatch.undo()
    assert paylinks.problem("k", "inv_1", old) == "expired"
    fresh = paylinks.signature("k", "inv_1")
    assert paylinks.problem("k", "inv_1", fresh) is None and paylinks.valid("k,older", "inv_1", fresh)
    assert paylinks.problem("k", "inv_2", fresh) == "invalid"


def _signed_days_ago(monkeypatch, days: int) -> str:
    now = time.time()
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(now - days * 24 * 3600))
    sig = paylinks.signature("k", "inv_1")
    monkeypatch.undo()
    return sig


def test_pay_links_last_90_days(monkeypatch):
    assert paylinks.problem("k", "inv_1", _signed_days_ago(monkeypatch, 89)) is None
    assert paylinks.problem("k", "inv_1", _signed_days_ago(monkeypatch, 91)) == "expired"


def test_an_invoices_payment_url_lasts_and_opens_only_its_invoice(monkeypatch):
    lasting = paylinks.lasting_path("k", "inv_1").rpartition("=")[2]
    monkeypatch.setattr(time, "time", lambda: 4_000_000_000.0)  # in 2096: no expiry to pass
    assert paylinks.problem("k", "inv_1", lasting) is None and paylinks.valid("k2,k", "inv_1", lasting)
    assert paylinks.problem("k", "inv_2", lasting) == "invalid"
    assert paylinks.problem("other", "inv_1", lasting) == "invalid"
    # A lasting signature is not a pay link's, nor the other way round (their purposes differ).
    assert lasting != signing.sign("k", paylinks.PURPOSE, "inv_1")
    assert paylinks.problem("k", "inv_1", signing.sign("k", paylinks.PURPOSE, "inv_1")) == "invalid"


def test_pdf_links_rotate_and_expire(monkeypatch):
    monkeypatch.setenv("BILLSTREAM_INVOICING_PDF_SIGNING_SECRET", "k-old")
    before = Settings()
    link = pdf.signed_url("ten_1", "inv_1", before)
    params = dict(p.split("=", 1) for p in link["url"].split("?", 1)[1].split("&"))
    monkeypatch.setenv("BILLSTREAM_INVOICING_PDF_SIGNING_SECRET", "k-new,k-old")
    pdf.verify("ten_1", "inv_1", int(params["expires"]), params["signature"], Settings())
    with pytest.raises(Refused) as refused:
        pdf.verify("ten_1", "inv_1", int(params["expires"]), "é" + params["signature"], Settings())
    assert status_of(refused.value) == 403
    expired = pdf.signed_url("ten_1", "inv_1", before, now=time.time() - 7200, ttl_s=3600)
    params = dict(p.split("=", 1) for p in expired["url"].split("?", 1)[1].split("&"))
    with pytest.raises(Refused) as gone:
        pdf.verify("ten_1", "inv_1", int(params["expires"]), params["signature"], before)
    assert (status_of(gone.value), gone.value.code) == (410, "link_expired")
