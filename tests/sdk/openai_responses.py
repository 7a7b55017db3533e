"""The official openai Python SDK's Responses API through the gateway, on the pass-through path
(gpt-4o-mini: an OpenAI provider) and the translated ones (llama-3: a chat-only provider;
claude-sonnet-4-5: an Anthropic provider). Run by tests/responses.rs."""
import sys

from openai import OpenAI
from pydantic import BaseModel

base_url, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key=key, max_retries=0)


class Answer(BaseModel):
    answer: str


for model in ["gpt-4o-mini", "llama-3", "claude-sonnet-4-5"]:
    r = client.responses.create(model=model, input="Say hello", instructions="Be brief.")
    assert r.object == "response" and r.status == "completed", (model, r)
    assert r.output_text, (model, r)
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens, (model, r.usage)

    with client.responses.stream(model=model, input="Say hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas and final.output_text == "".join(deltas), (model, deltas, final)
    assert final.usage.output_tokens > 0, (model, final.usage)

    if model != "claude-sonnet-4-5":  # the Anthropic translation drops response_format
        parsed = client.responses.parse(model=model, input="Answer in JSON", text_format=Answer)
        assert isinstance(parsed.output_parsed, Answer), (model, parsed)

    tools = [{"type": "function", "name": "weather", "description": "Weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                             "required": ["city"], "additionalProperties": False}}]
    r = client.responses.create(model=model, input="Weather in Oslo?", tools=tools,
                                extra_headers={"x-fake-tool-call": "weather"})
    calls = [o for o in r.output if o.type == "function_call"]
    assert calls and calls[0].name == "weather", (model, r)
    r2 = client.responses.create(model=model, tools=tools, input=[
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "function_call", "call_id": calls[0].call_id, "name": "weather",
         "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}])
    assert r2.output_text, (model, r2)

print("openai responses: ok")
