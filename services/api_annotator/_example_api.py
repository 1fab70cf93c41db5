"""The Hive API: the small beekeeping API of ``examples/hive-api/openapi.yaml``, served from
memory so the README's flow runs on one machine with no network::

    syllabus example-api                      # http://127.0.0.1:8765
    cd examples/hive-api && syllabus run openapi.yaml

Every operation of the spec is implemented; ``GET /openapi.yaml`` serves the spec with
its server URL set to where this server listens. Data start the same at every start.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["EXAMPLE_SPEC", "build_example_api"]

EXAMPLE_SPEC = Path(__file__).resolve().parents[2] / "examples" / "hive-api" / "openapi.yaml"
TODAY = dt.date(2025, 6, 20)  # fixed, so answers do not change from day to day

_HIVES: list[dict[str, Any]] = [
    {"id": "h1", "name": "Acacia", "site": "orchard", "queen_year": 2024, "status": "strong",
     "last_inspection": "2025-06-14"},
    {"id": "h2", "name": "Bramble", "site": "orchard", "queen_year": 2023, "status": "weak",
     "last_inspection": "2025-06-02"},
    {"id": "h3", "name": "Linden", "site": "meadow", "queen_year": 2025, "status": "strong",
     "last_inspection": "2025-06-10"},
    {"id": "h4", "name": "Heather", "site": "rooftop", "queen_year": 2022,
     "status": "queenless", "last_inspection": "2025-05-28"},
]
_INSPECTIONS: list[dict[str, Any]] = [
    {"id": "i1", "hive_id": "h1", "date": "2025-06-14", "queen_seen": True, "brood_frames": 8,
     "temper": "calm", "varroa_per_100": 0.5, "notes": "Supers filling fast."},
    {"id": "i2", "hive_id": "h1", "date": "2025-05-30", "queen_seen": True, "brood_frames": 7,
     "temper": "calm", "varroa_per_100": 0.3},
    {"id": "i3", "hive_id": "h2", "date": "2025-06-02", "queen_seen": False, "brood_frames": 3,
     "temper": "nervous", "varroa_per_100": 3.5, "notes": "High mite count; treat."},
    {"id": "i4", "hive_id": "h3", "date": "2025-06-10", "queen_seen": True, "brood_frames": 6,
     "temper": "calm", "varroa_per_100": 1.0},
    {"id": "i5", "hive_id": "h4", "date": "2025-05-28", "queen_seen": False, "brood_frames": 0,
     "temper": "aggressive", "varroa_per_100": 2.0, "notes": "No eggs; requeen."},
]
_HARVESTS: list[dict[str, Any]] = [
    {"hive_id": "h1", "date": "2024-07-20", "kg": 18.5, "honey": "summer"},
    {"hive_id": "h2", "date": "2024-07-21", "kg": 9.0, "honey": "summer"},
    {"hive_id": "h4", "date": "2024-08-30", "kg": 12.0, "honey": "heather"},
    {"hive_id": "h1", "date": "2025-05-25", "kg": 11.0, "honey": "spring"},
    {"hive_id": "h3", "date": "2025-05-26", "kg": 7.5, "honey": "spring"},
]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _int(request: Request, name: str, default: int | None, lo: int = 1, hi: int = 10_000
         ) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = int(raw)  # ValueError -> 400 below
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}")
    return value


def build_example_api(*, spec_path: Path = EXAMPLE_SPEC) -> Starlette:
    """The Hive API as a Starlette app, with fresh data."""
    hives = copy.deepcopy(_HIVES)
    inspections = copy.deepcopy(_INSPECTIONS)
    harvests = copy.deepcopy(_HARVESTS)
    counter = {"hive": len(hives), "inspection": len(inspections)}

    def hive(hive_id: str) -> dict[str, Any] | None:
        return next((h for h in hives if h["id"] == hive_id), None)

    async def spec(request: Request) -> Response:
        doc = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
        doc["servers"] = [{"url": str(request.base_url).rstrip("/"),
                           "description": "this server"}]
        return Response(yaml.safe_dump(doc, sort_keys=False), media_type="application/yaml")

    async def list_hives(request: Request) -> Response:
        limit = _int(request, "limit", 20, hi=100)
        site = request.query_params.get("site")
        status = request.query_params.get("status")
        out = [h for h in hives if (not site or h["site"] == site)
               and (not status or h["status"] == status)]
        return JSONResponse(out[:limit])

    async def create_hive(request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict) or not body.get("name") or \
                body.get("site") not in {"orchard", "meadow", "rooftop"}:
            return _error(400, "send a JSON object with 'name' and 'site' (orchard, meadow "
                          "or rooftop)")
        counter["hive"] += 1
        new = {"id": f"h{counter['hive']}", "name": str(body["name"]), "site": body["site"],
               "queen_year": body.get("queen_year"), "status": "strong",
               "last_inspection": None}
        hives.append(new)
        return JSONResponse(new, status_code=201)

    async def get_hive(request: Request) -> Response:
        h = hive(request.path_params["hive_id"])
        return JSONResponse(h) if h else _error(404, "no such hive")

    async def delete_hive(request: Request) -> Response:
        h = hive(request.path_params["hive_id"])
        if not h:
            return _error(404, "no such hive")
        hives.remove(h)
        inspections[:] = [i for i in inspections if i["hive_id"] != h["id"]]
        return JSONResponse({"deleted": h["id"]})

    async def list_inspections(request: Request) -> Response:
        h = hive(request.path_params["hive_id"])
        if not h:
            return _error(404, "no such hive")
        since = request.query_params.get("since")
        if since:
            dt.date.fromisoformat(since)
        limit = _int(request, "limit", 20, hi=100)
        out = sorted((i for i in inspections if i["hive_id"] == h["id"]
                      and (not since or i["date"] >= since)),
                     key=lambda i: i["date"], reverse=True)
        return JSONResponse(out[:limit])

    async def record_inspection(request: Request) -> Response:
        h = hive(request.path_params["hive_id"])
        if not h:
            return _error(404, "no such hive")
        body = await request.json()
        if not isinstance(body, dict) or "date" not in body:
            return _error(400, "send a JSON object with at least 'date'")
        dt.date.fromisoformat(str(body["date"]))
        counter["inspection"] += 1
        fields = ("date", "queen_seen", "brood_frames", "temper", "varroa_per_100", "notes")
        new = {"id": f"i{counter['inspection']}", "hive_id": h["id"],
               **{k: body[k] for k in fields if k in body}}
        inspections.append(new)
        h["last_inspection"] = max(h["last_inspection"] or "", new["date"])
        return JSONResponse(new, status_code=201)

    async def inspections_due(request: Request) -> Response:
        days = _int(request, "days", 10, hi=3650)
        out = []
        for h in hives:
            last = dt.date.fromisoformat(h["last_inspection"]) if h["last_inspection"] else None
            since = (TODAY - last).days if last else None
            if since is None or since >= days:
                out.append({"hive_id": h["id"], "name": h["name"], "days_since": since})
        return JSONResponse(out)

    async def list_harvests(request: Request) -> Response:
        year = _int(request, "year", None, lo=1900, hi=2100)
        if year is None:
            return _error(400, "the 'year' query parameter is required")
        hive_id = request.query_params.get("hive_id")
        return JSONResponse([x for x in harvests if x["date"].startswith(str(year))
                             and (not hive_id or x["hive_id"] == hive_id)])

    async def harvest_summary(request: Request) -> Response:
        year = _int(request, "year", None, lo=1900, hi=2100)
        if year is None:
            return _error(400, "the 'year' query parameter is required")
        per_hive: dict[str, float] = {}
        for x in harvests:
            if x["date"].startswith(str(year)):
                per_hive[x["hive_id"]] = per_hive.get(x["hive_id"], 0.0) + x["kg"]
        return JSONResponse({"year": year, "total_kg": round(sum(per_hive.values()), 2),
                             "per_hive": per_hive})

    def guarded(handler):
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ValueError as exc:  # bad numbers, dates or JSON in the request
                return _error(400, f"invalid request: {exc}")
        return endpoint

    routes = [
        Route("/openapi.yaml", spec, methods=["GET"]),
        Route("/hives", guarded(list_hives), methods=["GET"]),
        Route("/hives", guarded(create_hive), methods=["POST"]),
        Route("/hives/{hive_id}", guarded(get_hive), methods=["GET"]),
        Route("/hives/{hive_id}", guarded(delete_hive), methods=["DELETE"]),
        Route("/hives/{hive_id}/inspections", guarded(list_inspections), methods=["GET"]),
        Route("/hives/{hive_id}/inspections", guarded(record_inspection), methods=["POST"]),
        Route("/inspections/due", guarded(inspections_due), methods=["GET"]),
        Route("/harvests", guarded(list_harvests), methods=["GET"]),
        Route("/harvests/summary", guarded(harvest_summary), methods=["GET"]),
    ]
    return Starlette(routes=routes)
