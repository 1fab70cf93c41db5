"""The rationale service: records -> records with step-by-step rationales.

Consumes ``syllabus.qa.generated`` (durable consumer ``rationale``), runs the configured
rationale plugin (``rationale.technique``, ``step-by-step`` by default) with the record's
source chunk as context, and publishes on ``syllabus.qa.rationalized``. With no technique
configured it forwards records unchanged.
"""

from ._service import SERVICE, build_router

__all__ = ["SERVICE", "build_router"]
