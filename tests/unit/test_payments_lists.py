"""Payments' lists refuse query parameters they do not declare (shared/query_params.py), on a
small app of their own shape: no database needed."""

from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.testclient import TestClient

from shared.http_errors import install_error_handlers
from shared.query_params import declared_only


async def tenant(request: Request, debug: bool = False) -> str:
    return "ten_1"


app = FastAPI()
install_error_handlers(app)


@app.get("/things", dependencies=[Depends(declared_only)])
async def things(
    _: Annotated[str, Depends(tenant)],
    status: str | None = None,
    invoice_id: Annotated[str | None, Query(alias="invoiceId")] = None,
) -> dict:
    return {"status": status, "invoiceId": invoice_id}


@app.get("/plain", dependencies=[Depends(declared_only)])
async def plain() -> dict:
    return {}


def test_declared_parameters_by_alias_and_a_dependencys_pass():
    client = TestClient(app)
    r = client.get("/things", params={"status": "PAID", "invoiceId": "inv_1", "debug": "true"})
    assert r.status_code == 200 and r.json() == {"status": "PAID", "invoiceId": "inv_1"}


def test_anything_else_is_refused_naming_what_is_allowed():
    client = TestClient(app)
    r = client.get("/things", params={"stauts": "PAID"})
    error = r.json()["error"]
    assert (r.status_code, error["code"], error["field"]) == (400, "parameter_unknown", "stauts")
    assert error["message"] == "Unknown list parameter 'stauts'. Use one of: debug, invoiceId, status."
    assert client.get("/things", params={"invoice_id": "inv_1"}).json()["error"]["field"] == "invoice_id"
    r = client.get("/plain", params={"provider": "stripe"})
    assert r.status_code == 400 and r.json()["error"]["message"].endswith("This list takes none.")
