"""A budget refusal through the official openai SDK: `RateLimitError` with OpenAI's
`insufficient_quota` code, and (the gateway says `x-should-retry: false`) no retries.
Args: base URL (…/v1), key (unused: the consumer is named by x-consumer)."""
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2],
                       default_headers={"x-consumer": "alice"})
try:
    client.chat.completions.create(model="gpt-4o-mini", max_tokens=10,
                                   messages=[{"role": "user", "content": "Hello"}])
    print("no error")
except openai.RateLimitError as e:
    print("RateLimitError", e.status_code, e.code, e.body.get("type"))
