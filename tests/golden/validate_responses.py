"""Reads the Responses translator's answers with openai-python's own types.

Usage: validate_responses.py DIR, where DIR holds `<case>.expected.json` (a `response` object,
an OpenAI-format error, or a JSON string: a body that was not JSON, passed unchanged) and `<case>.expected.sse` (a Responses event stream) files, as the
native test `responses_answers_are_what_openai_python_reads` writes them.

Each `response` must pass `Response.model_validate`; each event `ResponseStreamEvent` (by its
`event:` name and its `type`), with `sequence_number` 0, 1, 2...; each stream must open with
`response.created`, end (if it ends) with its one terminal event, and go through the SDK's own
`responses.stream` accumulator, whose final response (after `response.completed`) must hold
the text the deltas sent. Exits 1 and names every failure.
"""

import json
import pathlib
import sys

from openai._types import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

EVENT = TypeAdapter(ResponseStreamEvent)
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


def sse_events(text):
    for block in text.split("\n\n"):
        name, data = "", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].strip())
        if data:
            yield name, json.loads("\n".join(data))


def check_json(body):
    if isinstance(body, str):
        return  # not JSON: the provider's text passes as it came
    if body.get("object") != "response":
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str), error
        return
    Response.model_validate(body)


def check_stream(text):
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    events = list(sse_events(text))
    assert events, "no events"
    assert events[0][0] == "response.created", events[0][0]
    deltas = []
    for n, (name, data) in enumerate(events):
        event = EVENT.validate_python(data)
        assert event.type == name, (name, event.type)
        assert event.sequence_number == n, (name, event.sequence_number, n)
        if name in TERMINAL:
            assert n == len(events) - 1, f"{name} is not the last event"
        if name == "response.output_text.delta":
            deltas.append(event.delta)
        state.handle_event(event)
    if events[-1][0] == "response.completed":
        final = state._completed_response
        assert final is not None, "the SDK has no final response"
        assert final.output_text == "".join(deltas), (final.output_text, deltas)


def main(directory):
    failures = []
    paths = sorted(pathlib.Path(directory).iterdir())
    for path in paths:
        try:
            if path.suffix == ".json":
                check_json(json.loads(path.read_text()))
            elif path.suffix == ".sse":
                check_stream(path.read_text())
        except Exception as e:  # every failure is reported, not only the first
            failures.append(f"{path.name}: {type(e).__name__}: {e}")
    for f in failures:
        print(f)
    print(f"{len(paths) - len(failures)} of {len(paths)} answers read by openai-python")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
