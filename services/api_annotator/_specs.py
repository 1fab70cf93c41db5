"""OpenAPI specs in: ``load_spec`` (parse, validate, resolve ``$ref``s, one ``ApiTool`` per
operation), ``is_api_spec`` (sniffing), ``SpecError``.

The implementation lives in the shared runtime (``syllabus.services.runtime._openapi``)
because two services need it: ingest recognises and validates a spec when it is
submitted (so ``syllabus ingest`` and the upload answer at once with the error), and the
api-annotator loads it; services do not import each other (DESIGN.md). This module is
the api-annotator's name for it.
"""

from ..runtime._openapi import LoadedSpec, SpecError, is_api_spec, load_spec, server_host

__all__ = ["LoadedSpec", "SpecError", "is_api_spec", "load_spec", "server_host"]
