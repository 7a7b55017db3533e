"""The official openai and anthropic Python SDKs, unchanged, through the gateway to the cloud
providers: for each model named after the base URL and the key, openai's chat completions (JSON,
a stream with its usage chunk, a tool call handed back), anthropic's messages (JSON, a stream and
its final message's usage, a tool call handed back) and openai's Responses API (JSON and a
stream). Run by tests/bedrock.rs:

    clouds.py BASE_URL KEY MODEL...
"""
import json
import sys

import anthropic
from openai import OpenAI

base_url, key, models = sys.argv[1], sys.argv[2], sys.argv[3:]
assert models, "name at least one model"
oai = OpenAI(base_url=base_url, api_key=key, max_retries=0)
ant = anthropic.Anthropic(base_url=base_url.rsplit("/v1", 1)[0], api_key=key, max_retries=0)

system = "Be brief."
question = "Weather in Oslo?"
call_tool = {"x-fake-tool-call": "weather"}
schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
chat_tools = [{"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                                                "parameters": schema}}]
messages_tools = [{"name": "weather", "description": "Weather in a city", "input_schema": schema}]


def chat(model):
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Hello"}]
    r = oai.chat.completions.create(model=model, messages=messages, max_tokens=64)
    assert r.object == "chat.completion", (model, r)
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content, (model, r)
    assert r.choices[0].finish_reason == "stop", (model, r)
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, (model, r.usage)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, (model, r.usage)

    chunks = list(oai.chat.completions.create(model=model, messages=messages, max_tokens=64,
                                              stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks), (model, chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text, (model, chunks)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"], (model, finish)
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None, (model, chunks[-1])
    assert usage.prompt_tokens == r.usage.prompt_tokens, (model, usage, r.usage)
    assert usage.completion_tokens == r.usage.completion_tokens, (model, usage, r.usage)

    asked = [{"role": "user", "content": question}]
    r = oai.chat.completions.create(model=model, messages=asked, tools=chat_tools,
                                    extra_headers=call_tool)
    assert r.choices[0].finish_reason == "tool_calls", (model, r)
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "weather" and call.id, (model, call)
    assert isinstance(json.loads(call.function.arguments), dict), (model, call)
    r = oai.chat.completions.create(model=model, tools=chat_tools, extra_headers=call_tool, messages=asked + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}])
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content, (model, r)


def messages(model):
    hello = [{"role": "user", "content": "Hello"}]
    m = ant.messages.create(model=model, max_tokens=64, system=system, messages=hello)
    assert m.type == "message" and m.role == "assistant", (model, m)
    assert m.content[0].type == "text" and m.content[0].text, (model, m)
    assert m.stop_reason == "end_turn", (model, m)
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0, (model, m.usage)

    with ant.messages.stream(model=model, max_tokens=64, system=system, messages=hello) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and final.content[0].text == text, (model, text, final)
    assert final.stop_reason == "end_turn", (model, final)
    # What cost trackers read: the streamed final usage equals the JSON answer's.
    assert final.usage.input_tokens == m.usage.input_tokens, (model, final.usage, m.usage)
    assert final.usage.output_tokens == m.usage.output_tokens, (model, final.usage, m.usage)
    assert (final.usage.cache_read_input_tokens or 0) == (m.usage.cache_read_input_tokens or 0)

    asked = [{"role": "user", "content": question}]
    m = ant.messages.create(model=model, max_tokens=256, messages=asked, tools=messages_tools,
                            extra_headers=call_tool)
    assert m.stop_reason == "tool_use", (model, m)
    use = next(b for b in m.content if b.type == "tool_use")
    assert use.name == "weather" and use.id and isinstance(use.input, dict), (model, use)
    m = ant.messages.create(model=model, max_tokens=256, tools=messages_tools, extra_headers=call_tool,
                            messages=asked + [
                                {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
                                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                              "content": "sunny, 21 C"}]}])
    assert m.stop_reason == "end_turn" and m.content[0].type == "text", (model, m)


def responses(model):
    r = oai.responses.create(model=model, input="Say hello", instructions=system)
    assert r.object == "response" and r.status == "completed", (model, r)
    assert r.output_text, (model, r)
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens, (model, r.usage)

    with oai.responses.stream(model=model, input="Say hello", instructions=system) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas and final.output_text == "".join(deltas), (model, deltas, final)
    assert final.status == "completed", (model, final)
    assert final.usage.input_tokens == r.usage.input_tokens, (model, final.usage, r.usage)
    assert final.usage.output_tokens == r.usage.output_tokens, (model, final.usage, r.usage)


for model in models:
    chat(model)
    messages(model)
    responses(model)
    print(f"{model}: ok")

print("clouds sdk: ok")
