"""The official anthropic Python SDK's models API through the gateway (demo configuration): the
gateway's routes in Anthropic's shape. Run by tests/models.rs."""
import sys

import anthropic

base_url, key = sys.argv[1], sys.argv[2]
root = base_url.rsplit("/v1", 1)[0]
client = anthropic.Anthropic(base_url=root, api_key=key, max_retries=0)

page = client.models.list()
ids = [m.id for m in page]
assert ids == ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "bedrock-claude-sonnet-4-5", "gemini-2.5-flash",
              "vertex-gemini-2.5-flash", "vertex-claude-sonnet-4-5", "resilient", "gpt-4o-mini-cached"], ids
assert all(m.type == "model" and m.display_name == m.id for m in page), page
assert page.first_id == "gpt-4o" and page.last_id == "gpt-4o-mini-cached", page
assert not page.has_more, page

m = client.models.retrieve("gpt-4.1")
assert m.id == "gpt-4.1" and m.type == "model" and m.created_at.year == 1970, m

try:
    client.models.retrieve("no-such-model")
    raise AssertionError("no error")
except anthropic.NotFoundError as e:
    assert e.status_code == 404 and e.body["type"] == "error", e.body

try:
    list(anthropic.Anthropic(base_url=root, api_key="sk-wrong", max_retries=0).models.list())
    raise AssertionError("no error")
except anthropic.AuthenticationError as e:
    assert e.status_code == 401 and e.body["type"] == "error", e.body

print("anthropic sdk models: ok")
