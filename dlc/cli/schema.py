"""`dlc schema`: the IR's JSON Schema."""

import json

NAME = "schema"


def command() -> None:
    """Print the IR's JSON Schema."""
    from dlc import api

    print(json.dumps(api.schema(), indent=2))
