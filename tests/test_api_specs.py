"""OpenAPI specs in: 3.0, 3.1 and Swagger 2.0, YAML and JSON, $ref resolution (nested and
cyclic), errors that name the file and the JSON path, sniffing, and the tools made from
the operations."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from syllabus.services.api_annotator._specs import (
    SpecError,
    is_api_spec,
    load_spec,
    server_host,
)

ROOT = Path(__file__).resolve().parent.parent
HIVE = ROOT / "examples" / "hive-api" / "openapi.yaml"
NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _dump(doc: dict) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _oas30(**extra) -> dict:
    doc = {
        "openapi": "3.0.3",
        "info": {"title": "Library", "version": "2.1"},
        "servers": [{"url": "https://{region}.api.example.com/v1",
                     "variables": {"region": {"default": "eu"}}}],
        "paths": {
            "/comments/{comment_id}": {
                "parameters": [{"$ref": "#/components/parameters/CommentId"}],
                "get": {
                    "operationId": "get comment (v2)!",
                    "summary": "Get a comment",
                    "description": "With its replies.",
                    "tags": ["comments", "social"],
                    "parameters": [
                        {"name": "comment_id", "in": "query", "schema": {"type": "string"},
                         "description": "a query parameter with the path parameter's name"},
                        {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": {"description": "ok", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Comment"}}}}},
                },
                "put": {
                    "tags": ["comments"],
                    "requestBody": {"required": True, "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Comment"}}}},
                    "responses": {"204": {"description": "saved"}},
                },
            },
            "/ping": {
                "servers": [{"url": "/health"}],
                "get": {"operationId": "ping", "responses": {"200": {
                    "description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}}},
            },
        },
        "components": {
            "parameters": {"CommentId": {"name": "comment_id", "in": "path", "required": True,
                                         "schema": {"$ref": "#/components/schemas/Id"}}},
            "schemas": {
                "Id": {"type": "string", "example": "c-1"},
                "Comment": {
                    "type": "object",
                    "required": ["text"],
                    "x-internal": "dropped",
                    "properties": {
                        "id": {"$ref": "#/components/schemas/Id", "readOnly": True},
                        "text": {"type": "string", "example": "Nice hive!"},
                        "author": {"type": "string", "nullable": True},
                        "posted": {"type": "string", "format": "date", "example": "2024-05-01"},
                        "replies": {"type": "array",
                                    "items": {"$ref": "#/components/schemas/Comment"}},
                    },
                },
            },
        },
    }
    doc.update(extra)
    return doc


def test_example_spec_openapi_31_yaml():
    spec = load_spec(HIVE.read_bytes(), filename="openapi.yaml")
    assert spec.openapi_version == "3.1.0" and spec.title == "Hive API"
    assert spec.servers == ["http://127.0.0.1:8765"]
    assert spec.hosts() == ["127.0.0.1:8765"]
    names = [t.name for t in spec.tools]
    assert len(names) == 9 and len(set(names)) == 9 and all(NAME.match(n) for n in names)
    assert {t.category for t in spec.tools} == {"hives", "inspections", "harvests"}
    get_hive = spec.tool("getHive")
    assert (get_hive.method, get_hive.path, get_hive.server) == (
        "GET", "/hives/{hive_id}", "http://127.0.0.1:8765")
    assert get_hive.locations == {"hive_id": "path"}
    assert get_hive.parameters["required"] == ["hive_id"]
    assert get_hive.example_arguments == {"hive_id": "h1"}
    assert get_hive.description.startswith("Get one hive\n\nThe hive's site")
    assert get_hive.response_media_type == "application/json"
    # $ref inside allOf inside a response is resolved
    assert "$ref" not in json.dumps(get_hive.response_schema)
    assert get_hive.response_schema["allOf"][0]["required"] == ["name", "site"]
    # path-level parameters ($ref) + operation parameters ($ref) + query parameters
    insp = spec.tool("listInspections")
    assert insp.locations == {"hive_id": "path", "since": "query", "limit": "query"}
    assert insp.example_arguments == {"hive_id": "h1", "since": "2025-04-01", "limit": 20}
    # a request body with an example (examples: {name: {value}})
    rec = spec.tool("recordInspection")
    assert rec.locations["body"] == "body" and rec.request_media_type == "application/json"
    assert rec.example_arguments["body"]["temper"] == "calm"
    assert rec.parameters["properties"]["body"]["properties"]["temper"]["enum"] == [
        "calm", "nervous", "aggressive"]
    # an enum from a $ref'd schema, a default, and a required query parameter's example
    hives = spec.tool("listHives")
    assert hives.parameters["properties"]["status"]["enum"][0] == "strong"
    assert hives.example_arguments == {"limit": 20}
    assert spec.tool("listHarvests").example_arguments == {"year": 2025}
    # every tool is an OpenAI function
    assert spec.tool("createHive").openai_tool()["function"]["parameters"]["required"] == ["body"]


def test_openapi_30_refs_cycles_and_conversion():
    spec = load_spec(_dump(_oas30()), filename="library.yaml",
                     base_url="https://status.example.com/")
    assert spec.openapi_version == "3.0.3"
    get = spec.tools[0]
    # operationId sanitised to a function name (and the rename noted)
    assert get.name == "get_comment_v2" and any("get comment (v2)!" in w for w in spec.warnings)
    # server variables take their default
    assert get.server == "https://eu.api.example.com/v1"
    # a query parameter with the path parameter's name gets its own argument name
    assert get.locations == {"comment_id": "path", "query_comment_id": "query",
                             "X-Trace": "header"}
    assert get.aliases == {"query_comment_id": "comment_id"}
    assert get.example_arguments == {"comment_id": "c-1"}
    assert get.category == "comments"
    assert get.description == "Get a comment\n\nWith its replies."
    # the cyclic Comment.replies is cut with a stub; nested refs are resolved
    replies = get.response_schema["properties"]["replies"]["items"]
    assert replies["type"] == "object" and "recursive" in replies["description"]
    assert get.response_schema["properties"]["id"] == {"type": "string", "example": "c-1"}
    # no operationId: method and path; the request body drops readOnly fields and x- keys,
    # nullable becomes a type list
    put = spec.tools[1]
    assert put.name == "put_comments_comment_id" and put.method == "PUT"
    body = put.parameters["properties"]["body"]
    assert "id" not in body["properties"] and "x-internal" not in body
    assert body["properties"]["author"]["type"] == ["string", "null"]
    assert put.example_arguments["body"] == {"text": "Nice hive!", "posted": "2024-05-01"}
    assert put.response_media_type is None and put.category == "comments"
    # a relative path-level server is resolved against base_url
    ping = spec.tool("ping")
    assert ping.server == "https://status.example.com/health"
    assert ping.response_media_type == "text/plain" and ping.category == "Library"
    assert set(spec.hosts()) == {"eu.api.example.com:443", "status.example.com:443"}


def test_yaml_and_json_give_the_same_tools():
    doc = _oas30()
    a = load_spec(_dump(doc), filename="a.yaml")
    b = load_spec(json.dumps(doc, indent=2).encode(), filename="a.json")
    assert [t.model_dump(exclude={"spec_id"}) for t in a.tools] == \
        [t.model_dump(exclude={"spec_id"}) for t in b.tools]
    assert a.spec_id != b.spec_id  # the sha256 of each file's bytes


def test_relative_server_without_base_url_is_a_warning():
    spec = load_spec(_dump(_oas30()), filename="library.yaml")
    assert spec.tool("ping").server == "/health"
    assert any("relative" in w and "base_url" in w for w in spec.warnings)


def test_yaml_dates_stay_strings():
    spec = load_spec(_dump(_oas30()).replace(b"'2024-05-01'", b"2024-05-01"),
                     filename="x.yaml")
    assert spec.tools[1].example_arguments["body"]["posted"] == "2024-05-01"


SWAGGER = """
swagger: "2.0"
info: {title: Pet Store, version: "1.0"}
host: petstore.example.com
basePath: /api
schemes: [http, https]
consumes: [application/json]
produces: [application/json]
paths:
  /pets:
    get:
      operationId: findPets
      tags: [pets]
      parameters:
        - {name: tags, in: query, type: array, items: {type: string}, collectionFormat: csv}
        - {name: limit, in: query, type: integer, format: int32, default: 5}
      responses:
        "200":
          description: pets
          schema: {type: array, items: {$ref: "#/definitions/Pet"}}
    post:
      operationId: addPet
      tags: [pets]
      parameters:
        - {name: pet, in: body, required: true, schema: {$ref: "#/definitions/NewPet"}}
      responses:
        "200": {description: the pet, schema: {$ref: "#/definitions/Pet"}}
  /pets/{id}/photo:
    post:
      operationId: uploadPhoto
      tags: [photos]
      consumes: [multipart/form-data]
      parameters:
        - {name: id, in: path, required: true, type: integer, x-example: 7}
        - {name: caption, in: formData, type: string, required: true}
        - {name: file, in: formData, type: file}
      responses:
        "200": {description: ok}
definitions:
  NewPet:
    type: object
    required: [name]
    properties:
      name: {type: string, example: Rex}
      tag: {type: string}
  Pet:
    allOf:
      - $ref: "#/definitions/NewPet"
      - type: object
        properties:
          id: {type: integer, format: int64}
"""


def test_swagger_2():
    spec = load_spec(SWAGGER.encode(), filename="petstore.yaml")
    assert spec.openapi_version == "2.0"
    assert spec.servers == ["https://petstore.example.com/api"]
    find, add, photo = spec.tools
    assert (find.name, find.category, find.server) == (
        "findPets", "pets", "https://petstore.example.com/api")
    assert find.parameters["properties"]["tags"] == {"type": "array",
                                                     "items": {"type": "string"}}
    assert find.example_arguments == {"limit": 5}
    assert find.response_media_type == "application/json"
    assert find.response_schema["items"]["allOf"][0]["required"] == ["name"]
    assert add.locations == {"body": "body"} and add.request_media_type == "application/json"
    assert add.example_arguments == {"body": {"name": "Rex"}}
    assert photo.locations == {"id": "path", "body": "body"}
    assert photo.request_media_type == "multipart/form-data"
    assert photo.parameters["properties"]["body"]["properties"]["file"] == {
        "type": "string", "format": "binary"}
    assert photo.example_arguments == {"id": 7, "body": {"caption": "example"}}


def _invalid(doc_or_bytes, filename="bad.yaml") -> str:
    data = doc_or_bytes if isinstance(doc_or_bytes, bytes) else _dump(doc_or_bytes)
    with pytest.raises(SpecError) as err:
        load_spec(data, filename=filename)
    return str(err.value)


def test_invalid_parameter_names_the_json_path():
    doc = _oas30()
    doc["paths"]["/comments/{comment_id}"]["get"]["parameters"][1].pop("in")
    assert _invalid(doc) == ("bad.yaml: paths./comments/{comment_id}.get.parameters[1]: "
                             "'in' is a required property")


def test_invalid_type_names_the_json_path():
    doc = _oas30()
    doc["paths"]["/ping"]["get"]["responses"] = 5
    assert _invalid(doc, "hive-api.json") == (
        "hive-api.json: paths./ping.get.responses: the value at this path (an integer) is not of type 'object'")


def test_dangling_ref_names_its_path():
    doc = _oas30()
    doc["paths"]["/ping"]["get"]["responses"]["200"]["content"]["text/plain"]["schema"] = {
        "$ref": "#/components/schemas/Nope"}
    msg = _invalid(doc)
    assert msg.startswith("bad.yaml: paths./ping.get.responses.200.content.text/plain."
                          "schema.$ref: '#/components/schemas/Nope' does not resolve")


def test_external_ref_is_refused_not_fetched():
    doc = _oas30()
    doc["components"]["schemas"]["Id"] = {"$ref": "http://169.254.169.254/latest/schema.json"}
    msg = _invalid(doc)
    assert "components.schemas.Id.$ref" in msg and "another document" in msg


@pytest.mark.parametrize("data,expected", [
    (b"openapi: 4.0.0\ninfo: {}\n", "bad.yaml: openapi: unsupported version '4.0.0'"),
    (b"swagger: '1.2'\n", "bad.yaml: swagger: unsupported version '1.2'"),
    (b"- a\n- b\n", "bad.yaml: the top level is list, not a mapping"),
    (b"title: x\n", "bad.yaml: neither 'openapi' nor 'swagger' is set"),
    (b"openapi: 3.0.0\ninfo: [unclosed\n", "bad.yaml: invalid YAML at line"),
    (b'{"openapi": "3.0.0",', "bad.yaml: invalid JSON at line 1"),
    (b"\xff\xfe\x00\x01", "bad.yaml: not UTF-8 text"),
])
def test_unusable_files(data, expected):
    assert _invalid(data).startswith(expected)


def test_unresolved_path_parameter_is_reported():
    doc = _oas30()
    doc["paths"]["/comments/{comment_id}"].pop("parameters")
    msg = _invalid(doc)
    assert msg.startswith("bad.yaml: ") and "comment_id" in msg


def test_spec_without_operations():
    doc = _oas30()
    doc["paths"] = {}
    assert _invalid(doc) == "bad.yaml: paths: the spec has no operations"


def test_alias_bomb_is_refused():
    lines = ["openapi: 3.0.0", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    msg = _invalid("\n".join(lines).encode())
    assert "more than 500000 nodes" in msg


def test_operation_names_are_unique_and_valid():
    doc = _oas30()
    long_id = "x" * 80
    doc["paths"]["/a"] = {"get": {"operationId": long_id, "responses": {"200": {"description": "o"}}}}
    doc["paths"]["/b"] = {"get": {"operationId": long_id + "y",
                                  "responses": {"200": {"description": "o"}}}}
    spec = load_spec(_dump(doc), filename="x.yaml")
    names = [t.name for t in spec.tools]
    assert len(set(names)) == len(names) and all(NAME.match(n) for n in names)
    assert "x" * 64 in names and "x" * 62 + "_2" in names


@pytest.mark.parametrize("head,name,expected", [
    (HIVE.read_bytes()[:8192], "openapi.yaml", True),
    (HIVE.read_bytes()[:8192], "api.txt", True),  # by content, not by name
    (json.dumps(_oas30()).encode(), "x.json", True),
    (SWAGGER.lstrip().encode(), "petstore", True),
    (b"# Our API\n\nWe describe it with openapi: 3.0.0 in a YAML file.\n", "api.md", False),
    (b"```yaml\nopenapi: 3.0.0\n```\n", "notes.md", False),
    (b'{"name": "package", "openapi": 3}', "package.json", False),
    (b"title: Release notes\nversion: 2\n", "notes.yaml", False),
    (b"%PDF-1.7\n", "openapi.yaml", False),
])
def test_is_api_spec(head, name, expected):
    assert is_api_spec(head, name) is expected


def test_server_host():
    assert server_host("https://api.example.com/v1") == "api.example.com:443"
    assert server_host("http://127.0.0.1:8765") == "127.0.0.1:8765"
    assert server_host("http://[::1]:80/x") == "[::1]:80"
    assert server_host("/relative") == ""


def test_swagger_2_json_is_the_same_as_yaml():
    as_json = json.dumps(yaml.safe_load(SWAGGER)).encode()
    a = load_spec(SWAGGER.encode(), filename="petstore.yaml")
    b = load_spec(as_json, filename="petstore.json")
    assert [t.model_dump(exclude={"spec_id"}) for t in a.tools] == \
        [t.model_dump(exclude={"spec_id"}) for t in b.tools]
