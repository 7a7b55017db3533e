"""The official openai Python SDK's models API through the gateway: the list and one model come
from the gateway's routes (demo configuration), an unknown model is the SDK's NotFoundError.
Run by tests/models.rs."""
import sys

import openai
from openai import OpenAI

base_url, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key=key, max_retries=0)

models = list(client.models.list())
ids = [m.id for m in models]
assert ids == ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "bedrock-claude-sonnet-4-5", "gemini-2.5-flash",
              "vertex-gemini-2.5-flash", "vertex-claude-sonnet-4-5", "resilient", "gpt-4o-mini-cached"], ids
assert all(m.object == "model" for m in models), models
owners = {m.id: m.owned_by for m in models}
assert owners["gpt-4.1-mini"] == "openai" and owners["gpt-4o"] == "openai", owners

m = client.models.retrieve("gpt-4.1-mini")
assert m.id == "gpt-4.1-mini" and m.object == "model" and m.owned_by == "openai", m

try:
    client.models.retrieve("gpt-4.1-nano")
    raise AssertionError("no error")
except openai.NotFoundError as e:
    assert e.code == "model_not_found", e.body

try:
    list(OpenAI(base_url=base_url, api_key="sk-wrong", max_retries=0).models.list())
    raise AssertionError("no error")
except openai.AuthenticationError as e:
    assert e.code == "invalid_api_key", e.body

print("openai sdk models: ok")
