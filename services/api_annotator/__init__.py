"""The api-annotator service: OpenAPI specs -> verified tool-call trajectories (ToolLLM,
Qin et al. 2023).

Consumes ``syllabus.specs.submitted`` (durable consumer ``api-annotator``), loads the spec
from the store (``load_spec``: validated, ``$ref``s resolved, one ``ApiTool`` per
operation), and runs four plugins (``register_tool_annotators``), each chosen in
``[api_annotator]``: API filtering (``filter``, every operation called once through the
``GuardedCaller``), instruction generation (``instructions``: I1, I2, I3), solution search
(``solver``: ``dfsdt`` by default, ``react`` as the baseline) and evaluation
(``evaluator``: ToolEval's rule-based pass rate). Every search is published on
``syllabus.tools.annotated`` as a ``ToolTrajectory`` (``solved`` says whether it is
training data); dropped instructions and invalid specs go to ``syllabus.generation.failed``;
the filter verdicts and the evaluation go to the store under ``tools/<spec_id>/``.
"""

from ._caller import CallPolicy, GuardedCaller
from ._service import SERVICE, SpecOutcome, annotate_spec, build_router
from ._specs import LoadedSpec, SpecError, load_spec

__all__ = [
    "SERVICE",
    "CallPolicy",
    "GuardedCaller",
    "LoadedSpec",
    "SpecError",
    "SpecOutcome",
    "annotate_spec",
    "build_router",
    "load_spec",
]
