"""`dlc schema`: the IR's JSON Schema."""

import json

NAME = "schema"


def command() -> None:
    """Print the IR's JSON Schema."""
    from dlc.compiler.spec import Spec

    print(json.dumps(Spec.model_json_schema(), indent=2))
