"""The official anthropic Python SDK, unchanged (as Claude Code would call), talking through the
gateway's Messages API to an OpenAI-format provider (translated both ways) and to an
Anthropic-format provider (passed through). Run by tests/providers.rs."""
import sys

import anthropic

base_url, key = sys.argv[1], sys.argv[2]
root = base_url.rsplit("/v1", 1)[0]
client = anthropic.Anthropic(base_url=root, api_key=key, max_retries=0)
messages = [{"role": "user", "content": "Hello"}]

for model in ["gpt-4o-mini", "claude-sonnet-4-5"]:
    m = client.messages.create(model=model, max_tokens=64, system="Be brief.", messages=messages)
    assert m.type == "message" and m.role == "assistant", m
    assert m.content[0].type == "text" and m.content[0].text, m
    assert m.stop_reason == "end_turn", m
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0, m.usage

    with client.messages.stream(model=model, max_tokens=64, system="Be brief.", messages=messages) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and final.content[0].text == text, (text, final)
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0, final
    # What Claude Code and cost trackers read: the streamed final usage equals the JSON one.
    assert final.usage.input_tokens == m.usage.input_tokens > 0, (final.usage, m.usage)
    assert final.usage.output_tokens == m.usage.output_tokens, (final.usage, m.usage)
    assert (final.usage.cache_read_input_tokens or 0) == (m.usage.cache_read_input_tokens or 0)

    events = [e.type for e in client.messages.create(model=model, max_tokens=64, messages=messages,
                                                     stream=True)]
    assert events[0] == "message_start" and events[-1] == "message_stop", events
    assert "content_block_delta" in events and "message_delta" in events, events

    # Provider errors arrive as the Anthropic SDK's own exceptions.
    try:
        client.messages.create(model=model, max_tokens=64, messages=messages,
                               extra_headers={"x-fake-status": "429"})
        raise AssertionError("no error")
    except anthropic.RateLimitError as e:
        assert e.status_code == 429 and e.body["error"]["type"] == "rate_limit_error", e.body

# The gateway's own errors too.
try:
    anthropic.Anthropic(base_url=root, api_key="sk-not-a-key", max_retries=0).messages.create(
        model="gpt-4o-mini", max_tokens=64, messages=messages)
    raise AssertionError("no error")
except anthropic.AuthenticationError as e:
    assert e.status_code == 401 and e.body["type"] == "error", e.body
try:
    client.messages.create(model="gpt-4o-mini", max_tokens=64, messages="not a list")
    raise AssertionError("no error")
except anthropic.BadRequestError as e:
    assert e.status_code == 400 and e.body["error"]["type"] == "invalid_request_error", e.body

print("anthropic sdk to openai: ok")
