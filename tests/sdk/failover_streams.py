"""Failover seen by the official SDKs' streaming APIs: each model names a chain whose first
provider answers 200 and then fails in-band first, or stalls; the client must see one clean
stream (the fallback's), without an exception, and its final usage.
Args: base URL (…/v1), key, then the chain models."""
import sys

import anthropic
import openai

base, key, models = sys.argv[1], sys.argv[2], sys.argv[3:]
oai = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
# The Anthropic SDK appends /v1 itself.
claude = anthropic.Anthropic(base_url=base.removesuffix("/v1"), api_key=key, max_retries=0)

for model in models:
    stream = oai.chat.completions.create(
        model=model, max_tokens=20, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Hello"}])
    text, usage = "", None
    for chunk in stream:
        for c in chunk.choices:
            text += c.delta.content or ""
        usage = chunk.usage or usage
    assert text and usage and usage.completion_tokens > 0, (model, text, usage)

    with oai.responses.stream(model=model, input="Hello", max_output_tokens=20) as s:
        for _ in s:
            pass
        final = s.get_final_response()
    assert final.status == "completed" and final.output_text, (model, final)

    with claude.messages.stream(model=model, max_tokens=20,
                                messages=[{"role": "user", "content": "Hello"}]) as s:
        for _ in s.text_stream:
            pass
        message = s.get_final_message()
    assert message.stop_reason and message.content[0].text, (model, message)
    assert message.usage.output_tokens > 0, (model, message.usage)
    print("clean", model)
print("all clean")
