"""The official openai Python SDK, unchanged, talking to an Anthropic-format provider through the
gateway: it must get ordinary OpenAI objects. Run by tests/providers.rs."""
import json
import sys

from openai import OpenAI

base_url, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key=key, max_retries=0)
messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]

r = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, max_tokens=50)
assert r.object == "chat.completion", r
assert r.choices[0].message.role == "assistant" and r.choices[0].message.content, r
assert r.choices[0].finish_reason == "stop", r
assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage

chunks = list(client.chat.completions.create(
    model="claude-sonnet-4-5", messages=messages, stream=True, stream_options={"include_usage": True}))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert text, chunks
assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0, chunks[-1]
finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
assert finish == ["stop"], finish

tools = [{"type": "function", "function": {"name": "weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
r = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, tools=tools,
                                   extra_headers={"x-fake-tool-call": "weather"})
call = r.choices[0].message.tool_calls[0]
assert r.choices[0].finish_reason == "tool_calls", r
assert call.function.name == "weather" and isinstance(json.loads(call.function.arguments), dict), call

chunks = list(client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, tools=tools,
                                             stream=True, extra_headers={"x-fake-tool-call": "weather"}))
args = "".join(tc.function.arguments or "" for c in chunks if c.choices
               for tc in (c.choices[0].delta.tool_calls or []))
assert isinstance(json.loads(args), dict), args

print("openai sdk to anthropic: ok")
