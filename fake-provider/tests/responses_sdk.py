"""The fake provider's Responses API through the official openai Python SDK, and every raw JSON
body and stream event validated (pydantic validation, not the SDK's lenient construction)
with the SDK's own types. Run by tests/responses_sdk.rs with the fake's base URL."""
import json
import sys

import anthropic
import httpx
import openai
import pydantic
from openai import OpenAI
from openai.types.responses import (
    InputTokenCountResponse,
    Response,
    ResponseItemList,
    ResponseStreamEvent,
)

root = sys.argv[1]
base = root + "/v1"
client = OpenAI(base_url=base, api_key="sk-test", max_retries=0)
events_adapter = pydantic.TypeAdapter(ResponseStreamEvent)

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather of a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
CALL = {"x-fake-tool-call": "get_weather"}


def post(body, headers=None, path="/responses"):
    r = httpx.post(base + path, json=body, headers=headers or {}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def created(body, headers=None):
    """A JSON response, validated as a `Response`."""
    data = post(body, headers)
    return Response.model_validate(data), data


def stream(body, headers=None):
    """The events of a stream, each validated as a `ResponseStreamEvent` (but `error`, whose
    wire shape nests the error as OpenAI sends it), numbered from 0, with no `[DONE]`."""
    with httpx.stream("POST", base + "/responses", json={**body, "stream": True},
                      headers=headers or {}, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        text = r.read().decode()
    assert "[DONE]" not in text
    frames = text.split("\n\n")
    assert frames[-1] == "", frames[-1]
    out = []
    for i, frame in enumerate(frames[:-1]):
        name, data = frame.split("\n")
        assert name.startswith("event: ") and data.startswith("data: "), frame
        data = json.loads(data[len("data: "):])
        assert data["type"] == name[len("event: "):] and data["sequence_number"] == i, frame
        if data["type"] != "error":
            events_adapter.validate_python(data)
        out.append(data)
    return out


def kinds(events):
    return [e["type"] for e in events]


# --- text, JSON and stream --------------------------------------------------------------
r, raw = created({"model": "gpt-4o", "input": "Hello"})
assert r.status == "completed" and r.output_text.startswith("The quick brown fox"), r
assert r.usage.input_tokens == 8 and r.usage.output_tokens == 16, r.usage
assert r.usage.total_tokens == 24 and r.usage.input_tokens_details.cached_tokens == 0

sdk = client.responses.create(model="gpt-4o", input="Hello")
assert sdk.output_text == r.output_text and sdk.usage.input_tokens == 8, sdk

events = stream({"model": "gpt-4o", "input": "Hello"}, {"x-fake-completion-tokens": "4"})
assert kinds(events) == [
    "response.created", "response.in_progress", "response.output_item.added",
    "response.content_part.added"] + ["response.output_text.delta"] * 4 + [
    "response.output_text.done", "response.content_part.done", "response.output_item.done",
    "response.completed"], kinds(events)
final = Response.model_validate(events[-1]["response"])
assert final.output_text == "The quick brown fox" and final.usage.output_tokens == 4, final

with client.responses.stream(model="gpt-4o", input="Hello") as s:
    deltas = "".join(e.delta for e in s if e.type == "response.output_text.delta")
    final = s.get_final_response()
assert deltas == final.output_text == r.output_text, (deltas, final)
assert final.usage.input_tokens == 8


# --- responses.parse with a Pydantic model ----------------------------------------------
class Weather(pydantic.BaseModel):
    city: str
    temperature: int


p = client.responses.parse(model="gpt-4o", input="The weather in Paris, as JSON.",
                           text_format=Weather)
assert isinstance(p.output_parsed, Weather), p
Response.model_validate(post({"model": "gpt-4o", "input": "x", "text": {"format": {
    "type": "json_schema", "name": "Weather", "strict": True,
    "schema": Weather.model_json_schema() | {"additionalProperties": False}}}}))
with client.responses.stream(model="gpt-4o", input="Weather?", text_format=Weather) as s:
    for _ in s:
        pass
    assert isinstance(s.get_final_response().output_parsed, Weather)

# --- a function call round trip ---------------------------------------------------------
user = {"role": "user", "content": "Weather in Paris?"}
r1, _ = created({"model": "gpt-4o", "input": [user], "tools": [WEATHER]}, CALL)
call = r1.output[0]
assert call.type == "function_call" and call.name == "get_weather", r1
assert isinstance(json.loads(call.arguments)["city"], str)
sdk1 = client.responses.create(model="gpt-4o", input=[user], tools=[WEATHER], extra_headers=CALL)
call = sdk1.output[0]
output = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
sdk2 = client.responses.create(model="gpt-4o", tools=[WEATHER], extra_headers=CALL,
                               input=[user, call.model_dump(exclude_none=True), output])
assert sdk2.output_text == "The function get_weather returned: sunny", sdk2
sdk3 = client.responses.create(model="gpt-4o", tools=[WEATHER], extra_headers=CALL,
                               previous_response_id=sdk1.id, input=[output])
assert sdk3.output_text == sdk2.output_text, sdk3
assert sdk3.usage.input_tokens == sdk2.usage.input_tokens, (sdk3.usage, sdk2.usage)

events = stream({"model": "gpt-4o", "input": [user], "tools": [WEATHER]}, CALL)
assert "response.function_call_arguments.delta" in kinds(events), kinds(events)
assert kinds(events)[-3:] == ["response.function_call_arguments.done",
                              "response.output_item.done", "response.completed"]
with client.responses.stream(model="gpt-4o", input=[user], tools=[WEATHER],
                             extra_headers=CALL) as s:
    args = "".join(e.delta for e in s if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == json.loads(s.get_final_response().output[0].arguments)

# --- incomplete, reasoning --------------------------------------------------------------
cut = {"model": "gpt-4o", "input": "Hello", "max_output_tokens": 16}
r, _ = created(cut, {"x-fake-completion-tokens": "40"})
assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens", r
assert r.usage.output_tokens == 16 and r.output[0].status == "incomplete"
events = stream(cut, {"x-fake-completion-tokens": "40"})
assert events[-1]["type"] == "response.incomplete", kinds(events)
r, _ = created({"model": "o3", "input": "Hello"}, {"x-fake-reasoning-tokens": "12"})
assert [o.type for o in r.output] == ["reasoning", "message"], r.output
assert r.usage.output_tokens_details.reasoning_tokens == 12 and r.usage.output_tokens == 28
stream({"model": "o3", "input": "Hello"}, {"x-fake-reasoning-tokens": "12"})

# --- in-band errors ---------------------------------------------------------------------
events = stream({"model": "gpt-4o", "input": "Hello"},
                {"x-fake-stream-error-after-events": "4"})
assert kinds(events)[-2:] == ["error", "response.failed"], kinds(events)
assert events[-2]["error"]["code"] == "server_error", events[-2]
failed = Response.model_validate(events[-1]["response"])
assert failed.status == "failed" and failed.error.code == "server_error", failed
try:
    for _ in client.responses.create(model="gpt-4o", input="Hello", stream=True,
                                     extra_headers={"x-fake-stream-error-after-events": "4"}):
        pass
    raise AssertionError("the error event must raise")
except openai.APIError as e:
    assert "An error occurred while processing your request" in e.message, e

# --- input_tokens, retrieve, input_items, delete ----------------------------------------
count = client.responses.input_tokens.count(model="gpt-4o", input="Hello")
assert count.input_tokens == 8, count
InputTokenCountResponse.model_validate(post({"model": "gpt-4o", "input": "Hello"},
                                            path="/responses/input_tokens"))
stored = client.responses.create(model="gpt-4o", instructions="Be brief.",
                                 input=[{"role": "user", "content": "Hello"},
                                        {"role": "assistant", "content": "Hi!"},
                                        {"role": "user", "content": "More"}])
got = client.responses.retrieve(stored.id)
assert got.id == stored.id and got.output_text == stored.output_text, got
items = client.responses.input_items.list(stored.id)
assert [i.content[0].text for i in items.data] == ["More", "Hi!", "Hello"], items
ResponseItemList.model_validate(httpx.get(f"{base}/responses/{stored.id}/input_items").json())
client.responses.delete(stored.id)
for call in (lambda: client.responses.retrieve(stored.id),
             lambda: client.responses.delete(stored.id)):
    try:
        call()
        raise AssertionError("a deleted response must be gone")
    except openai.NotFoundError as e:
        assert e.body["message"] == f"Response with id '{stored.id}' not found.", e.body

# --- OpenAI-format 400s -----------------------------------------------------------------
for kwargs, param in [
    (dict(input=[{"role": "tool", "content": "x"}]), "input[0].role"),
    (dict(input="x", max_output_tokens=8), "max_output_tokens"),
    (dict(input="x", previous_response_id="resp_nope"), "previous_response_id"),
]:
    try:
        client.responses.create(model="gpt-4o", **kwargs)
        raise AssertionError(kwargs)
    except openai.BadRequestError as e:
        assert e.body["param"] == param, e.body

# --- Anthropic's count_tokens -----------------------------------------------------------
claude = anthropic.Anthropic(base_url=root, api_key="sk-ant-test", max_retries=0)
tokens = claude.messages.count_tokens(model="claude-sonnet-4-5",
                                      messages=[{"role": "user", "content": "Hello, Claude"}])
message = claude.messages.create(model="claude-sonnet-4-5", max_tokens=16,
                                 messages=[{"role": "user", "content": "Hello, Claude"}])
assert tokens.input_tokens == message.usage.input_tokens > 0, (tokens, message.usage)

print("responses sdk ok")
