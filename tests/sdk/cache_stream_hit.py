"""The official openai Python SDK, unchanged, reading answers the gateway's response cache serves:
streamed hits (with and without the usage chunk) and JSON hits of a streamed miss, and a tool
call replayed through the SDK's own stream accumulator. Run by tests/cache.rs with the gateway's
base URL and a consumer key; gpt-4o-mini caches, gpt-4o caches tool calls too."""
import json
import sys

from openai import OpenAI

base_url, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key=key, max_retries=0)
messages = [{"role": "user", "content": "Tell me about response caches in gateways."}]


def stream(headers=None, **kw):
    """A streamed answer: the x-llm-cache header and the parsed chunks."""
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages, stream=True, extra_headers=headers or {}, **kw)
    return raw.headers.get("x-llm-cache"), list(raw.parse())


def assemble(chunks):
    assert chunks and all(c.object == "chat.completion.chunk" for c in chunks), chunks
    assert len({c.id for c in chunks}) == 1, [c.id for c in chunks]
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant", with_choices[0]
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    finish = [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason]
    usage = [c.usage for c in chunks if c.usage is not None]
    return text, finish, usage


# The miss, streamed with usage; the provider answers 12 tokens.
status, miss = stream({"x-fake-completion-tokens": "12"}, stream_options={"include_usage": True})
assert status == "miss", status
text, finish, usage = assemble(miss)
assert text and finish == ["stop"] and len(usage) == 1, (text, finish, usage)
assert usage[0].completion_tokens == 12, usage

# A streamed hit with usage: the same text, finish reason and usage (a provider asked again
# would answer 3 tokens).
status, hit = stream({"x-fake-completion-tokens": "3"}, stream_options={"include_usage": True})
assert status == "hit", status
assert assemble(hit) == (text, finish, usage), (assemble(hit), text)
assert hit[-1].choices == [] and hit[-1].usage == usage[0], hit[-1]

# A streamed hit without include_usage: no usage anywhere.
status, hit = stream({"x-fake-completion-tokens": "3"})
assert status == "hit", status
assert assemble(hit) == (text, finish, []), assemble(hit)

# A JSON hit of the streamed miss.
raw = client.chat.completions.with_raw_response.create(
    model="gpt-4o-mini", messages=messages, extra_headers={"x-fake-completion-tokens": "3"})
assert raw.headers.get("x-llm-cache") == "hit", raw.headers
r = raw.parse()
assert r.object == "chat.completion", r
assert r.choices[0].message.role == "assistant" and r.choices[0].message.content == text, r
assert r.choices[0].finish_reason == "stop", r
assert r.usage.prompt_tokens == usage[0].prompt_tokens, r.usage
assert r.usage.completion_tokens == 12 and r.usage.total_tokens == usage[0].total_tokens, r.usage

# Tool calls (gpt-4o stores them): the SDK's stream helper accumulates the miss and the hit.
tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
weather = [{"role": "user", "content": "What's the weather in Paris?"}]


def tool_stream():
    with client.chat.completions.stream(
            model="gpt-4o", messages=weather, tools=tools, stream_options={"include_usage": True},
            extra_headers={"x-fake-tool-call": "get_weather"}) as s:
        # The httpx response the stream reads (for the cache header).
        status = s._response.headers.get("x-llm-cache")
        return status, s.get_final_completion()


status, first = tool_stream()
assert status == "miss", status
call = first.choices[0].message.tool_calls[0]
assert first.choices[0].finish_reason == "tool_calls", first
assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}, call
status, again = tool_stream()
assert status == "hit", status
assert again.choices[0].finish_reason == "tool_calls", again
replayed = again.choices[0].message.tool_calls
assert len(replayed) == 1, replayed
assert (replayed[0].id, replayed[0].type, replayed[0].function.name, replayed[0].function.arguments) == \
    (call.id, call.type, call.function.name, call.function.arguments), (replayed, call)
assert again.usage == first.usage, (again.usage, first.usage)

raw = client.chat.completions.with_raw_response.create(
    model="gpt-4o", messages=weather, tools=tools, extra_headers={"x-fake-tool-call": "get_weather"})
assert raw.headers.get("x-llm-cache") == "hit", raw.headers
r = raw.parse()
assert r.choices[0].finish_reason == "tool_calls", r
assert r.choices[0].message.tool_calls[0].id == call.id, r
assert r.choices[0].message.tool_calls[0].function.arguments == call.function.arguments, r

print("cache stream hit: ok")
