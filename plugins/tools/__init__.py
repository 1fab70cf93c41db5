"""Built-in api-annotator plugins (ToolLLM, Qin et al. 2023): API filtering, instruction
generation, solution search and evaluation, each registered through
``register_tool_annotators``."""
