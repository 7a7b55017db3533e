"""The official openai Python SDK against the gateway: what an app sees when it only changes
its base URL. Run by tests/sdk.rs with the gateway's base URL and a consumer key."""
import sys

import openai
from openai import OpenAI

base_url, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key=key, max_retries=0)
messages = [{"role": "user", "content": "Hello"}]

r = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
assert r.object == "chat.completion", r
assert r.choices[0].message.role == "assistant" and r.choices[0].message.content, r
assert r.usage.prompt_tokens == 8 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage

# A stream without include_usage: the gateway asked for usage itself and must strip it again.
chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert text, chunks
assert all(c.object == "chat.completion.chunk" for c in chunks)
assert all(c.usage is None for c in chunks), [c.usage for c in chunks]
assert chunks[-1].choices[0].finish_reason == "stop", chunks[-1]

# A stream with include_usage: the usage chunk arrives, as from OpenAI.
chunks = list(client.chat.completions.create(
    model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}))
assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 8, chunks[-1]

e = client.embeddings.create(model="text-embedding-3-small", input=["Hello, world!", "Hi"])
assert len(e.data) == 2 and e.usage.prompt_tokens == 5, e.usage

for call, exc, code in [
    (lambda: OpenAI(base_url=base_url, api_key="sk-wrong", max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=messages), openai.AuthenticationError, "invalid_api_key"),
    (lambda: client.chat.completions.create(model="no-such-model", messages=messages),
     openai.NotFoundError, "model_not_found"),
    (lambda: client.chat.completions.create(model="gpt-4o-mini", messages=[]),
     openai.BadRequestError, "invalid_value"),
]:
    try:
        call()
    except exc as err:
        assert err.code == code, (err.code, err.body)
    else:
        raise AssertionError(f"expected {exc.__name__}")

print("openai sdk smoke: ok")
