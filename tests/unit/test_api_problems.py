"""Problems and the OpenAPI document of a bare FastAPI app with quantbeat's problem handling
(:func:`quantbeat.api.problems.install`), no services: an unreadable body is a 422 naming
``body`` and why; ``Allow`` on a 405 follows OpenAPI's path precedence (a concrete path over
a templated one); problem bodies are documented under ``application/problem+json``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from quantbeat.api.problems import PROBLEM_MEDIA_TYPE, PROBLEM_RESPONSES, install


class Spec(BaseModel):
    name: str


def _app() -> FastAPI:
    app = FastAPI()
    install(app)

    @app.post("/things/batch", responses=PROBLEM_RESPONSES)
    def batch(spec: Spec) -> dict[str, str]:
        return {"name": spec.name}

    @app.get("/things/{name}", responses=PROBLEM_RESPONSES)
    def thing(name: str) -> dict[str, str]:
        return {"name": name}

    return app


def _post(body: bytes) -> Any:
    client = TestClient(_app())
    return client.post("/things/batch", content=body, headers={"content-type": "application/json"})


def test_a_body_that_is_not_utf8_is_a_422_naming_the_byte() -> None:
    r = _post(b'{"name": "\xc3\x28"}')
    assert r.status_code == 422
    assert r.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    body = r.json()
    assert body["errors"] == [
        {"field": "body", "message": "not UTF-8 text (byte 0xc3 at offset 10); send it "
         "encoded as UTF-8"}
    ]  # fmt: skip
    assert body["detail"].startswith("body: not UTF-8 text")


def test_a_body_that_is_not_json_is_a_422_naming_where_it_breaks() -> None:
    r = _post(b'{"name": ')
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"field": "body", "message": "not valid JSON: Expecting value at character 9"}
    ]
    assert _post(b'{"name": "ok"}').json() == {"name": "ok"}


def test_allow_names_the_concrete_paths_methods_not_the_templated_ones() -> None:
    client = TestClient(_app())
    for method in ("PUT", "DELETE", "OPTIONS"):
        r = client.request(method, "/things/batch")
        assert r.status_code == 405
        assert r.headers["allow"] == "POST"
    r = client.post("/things/other")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    assert "POST is not allowed on /things/other" in r.json()["detail"]


def test_problem_bodies_are_documented_under_their_media_type() -> None:
    document = _app().openapi()
    for operations in document["paths"].values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if status in {str(s) for s in PROBLEM_RESPONSES}:
                    assert response["content"] == {
                        PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }
    assert "Problem" in document["components"]["schemas"]
