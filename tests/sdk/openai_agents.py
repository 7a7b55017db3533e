"""The OpenAI Agents SDK through the gateway: an agent with one function tool runs to completion,
plain and streamed, against an OpenAI-format provider (gpt-4o-mini, passed through) and an
Anthropic one (claude-sonnet-4-5, translated). Prints the SDK's usage totals for tests/responses.rs
to compare with the gateway's access log. Run with the gateway's base URL and a consumer key."""
import asyncio
import json
import sys

from agents import (Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool,
                    set_tracing_disabled)
from openai import AsyncOpenAI

base_url, key = sys.argv[1], sys.argv[2]
set_tracing_disabled(True)
client = AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0)
calls = []


@function_tool
def weather(city: str) -> str:
    """The weather in a city."""
    calls.append(city)
    return f"sunny in {city}"


async def run(model, streamed):
    agent = Agent(name="forecaster", instructions="Answer with the tool's result.",
                  tools=[weather], model=OpenAIResponsesModel(model=model, openai_client=client),
                  model_settings=ModelSettings(extra_headers={"x-fake-tool-call": "weather"}))
    if streamed:
        result = Runner.run_streamed(agent, "Weather in Oslo?")
        async for _ in result.stream_events():
            pass
    else:
        result = await Runner.run(agent, "Weather in Oslo?")
    assert result.final_output, (model, streamed, result)
    u = result.context_wrapper.usage
    return {"requests": u.requests, "input": u.input_tokens, "output": u.output_tokens,
            "total": u.total_tokens}


async def main():
    totals = {"requests": 0, "input": 0, "output": 0, "total": 0}
    for model in ["gpt-4o-mini", "claude-sonnet-4-5"]:
        for streamed in (False, True):
            n = len(calls)
            u = await run(model, streamed)
            assert len(calls) == n + 1, (model, streamed, calls)
            assert u["requests"] == 2, (model, streamed, u)
            for k in totals:
                totals[k] += u[k]
    print("agents usage: " + json.dumps(totals))
    print("openai agents: ok")


asyncio.run(main())
