"""The question-gen service: chunks -> instruction/response records.

Consumes ``syllabus.chunks.created`` (durable consumer ``question-gen``) and runs every
configured question-generator plugin (``question_gen.techniques``: ``qa-pairs``,
``backtranslation``, or a third party's) with the configured teacher. Publishes kept
records on ``syllabus.qa.generated``, curated-out records on ``syllabus.records.rejected``
and unusable teacher output on ``syllabus.generation.failed``.
"""

from ._service import SERVICE, build_router

__all__ = ["SERVICE", "build_router"]
