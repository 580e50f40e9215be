"""What popular client libraries do works on Claude channels: structured output with tools
(OpenAI Agents SDK, instructor) and thinking in chat tool loops (LangChain), through the real
libraries against an Anthropic fake that enforces the real API's rules."""
from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from .fakes.anthropic_loop import FakeAnthropicLoop
from .support import ACME_KEY, serve_fake

SIGNATURE_BLOCK = json.loads((FakeAnthropicLoop().fixtures / "thinking_tool_use.json").read_text())["content"][0]


class WeatherReport(BaseModel):
    city: str
    temperature_c: int
    conditions: str


@pytest.fixture
async def loop_fake(aiohttp_server: Any) -> FakeAnthropicLoop:
    return await serve_fake(FakeAnthropicLoop(), aiohttp_server)


@pytest.fixture
async def loop_relay(make_relay: Any, loop_fake: FakeAnthropicLoop) -> Any:
    return await make_relay(f"""\
tenants:
  - name: acme
    keys: ["{ACME_KEY}"]
channels:
  - name: claude
    type: anthropic
    base_url: {loop_fake.url}
    api_key: sk-ant-test
    default_max_tokens: 2000
    models: {{claude-loop: loop, claude-loop-think: loop-think}}
""")


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"18°C and sunny in {city}"


async def test_langchain_thinking_tool_round_trip_keeps_the_signed_block(loop_relay, loop_fake):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="claude-loop-think", base_url=loop_relay.url + "/v1", api_key=ACME_KEY,
                     reasoning_effort="low", max_retries=0)
    weather = tool(get_weather)
    bound = llm.bind_tools([weather])
    history: list[Any] = [HumanMessage("What is the weather in Paris?")]
    first = await bound.ainvoke(history)
    assert [c["name"] for c in first.tool_calls] == ["get_weather"]
    history += [first, ToolMessage(weather.invoke(first.tool_calls[0]["args"]), tool_call_id=first.tool_calls[0]["id"])]
    final = await bound.ainvoke(history)
    assert "sunny" in final.content
    second_turn = loop_fake.requests[-1].body
    assert second_turn["thinking"]["type"] == "enabled"  # thinking stayed on
    assistant = [m for m in second_turn["messages"] if m["role"] == "assistant"][-1]
    assert assistant["content"][0] == SIGNATURE_BLOCK  # the original block, signature byte for byte


async def test_langchain_streaming_round_trip_keeps_the_signed_block(loop_relay, loop_fake):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="claude-loop-think", base_url=loop_relay.url + "/v1", api_key=ACME_KEY,
                     reasoning_effort="low", max_retries=0, streaming=True).bind_tools([get_weather])
    history: list[Any] = [HumanMessage("What is the weather in Paris?")]
    first = None
    async for piece in llm.astream(history):
        first = piece if first is None else first + piece
    assert first is not None and first.tool_calls[0]["name"] == "get_weather"
    history += [first, ToolMessage("18°C and sunny in Paris", tool_call_id=first.tool_calls[0]["id"])]
    final = await llm.ainvoke(history)
    assert "sunny" in final.content
    assistant = [m for m in loop_fake.requests[-1].body["messages"] if m["role"] == "assistant"][-1]
    assert assistant["content"][0] == SIGNATURE_BLOCK


async def test_without_a_remembered_block_thinking_is_turned_off_not_refused(loop_relay, loop_fake):
    """Another tenant's (or an expired) memory gives nothing: the turn goes without thinking."""
    call = {"id": "toolu_01PaRisWeaTher0000000001", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}
    body = {"model": "claude-loop-think", "reasoning_effort": "low", "tools": [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "messages": [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]}
    resp, answer = await loop_relay.post_json("/v1/chat/completions", body)
    assert resp.status == 200, answer
    assert "reasoning_effort" in resp.headers["x-relay-ignored-params"]
    assert "thinking" not in loop_fake.requests[-1].body


def agent_for(model: Any) -> Any:
    from agents import Agent, function_tool

    return Agent(name="weather", instructions="Report the weather.", model=model,
                 tools=[function_tool(get_weather)], output_type=WeatherReport)


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_agents_sdk_output_type_with_tools(loop_relay, loop_fake, api):
    import openai
    from agents import OpenAIChatCompletionsModel, OpenAIResponsesModel, Runner, set_tracing_disabled

    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=loop_relay.url + "/v1", api_key=ACME_KEY, max_retries=0)
    model = (OpenAIResponsesModel if api == "responses" else OpenAIChatCompletionsModel)(model="claude-loop", openai_client=client)
    result = await Runner.run(agent_for(model), "What is the weather in Paris?")
    assert result.final_output == WeatherReport(city="Paris", temperature_c=18, conditions="sunny")
    first, second = (r.body for r in loop_fake.requests)
    assert [t["name"] for t in first["tools"]] == ["get_weather", "json_response"]  # offered, not forced
    assert "tool_choice" not in first
    assert second["messages"][-1]["content"][0]["type"] == "tool_result"  # the tool ran and its result went back


@pytest.mark.parametrize("mode", ["TOOLS", "RESPONSES_TOOLS"])
async def test_instructor_modes_parse(loop_relay, loop_fake, mode):
    import instructor
    import openai

    client = instructor.from_openai(openai.AsyncOpenAI(base_url=loop_relay.url + "/v1", api_key=ACME_KEY, max_retries=0),
                                    mode=getattr(instructor.Mode, mode))
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    if mode == "TOOLS":
        report = await client.chat.completions.create(model="claude-loop", response_model=WeatherReport, messages=messages,
                                                      max_retries=0)
    else:
        report = await client.responses.create(model="claude-loop", response_model=WeatherReport, input=messages, max_retries=0)
    assert report.model_dump() == {"city": "Paris", "temperature_c": 18, "conditions": "sunny"}
    sent = loop_fake.requests[-1].body
    assert sent["tool_choice"] == {"type": "tool", "name": "WeatherReport"}


async def test_thinking_continues_on_another_instance_sharing_the_store(make_relay, loop_fake, tmp_path):
    config = f"""\
store:
  url: sqlite:///{tmp_path}/relay.db
tenants:
  - name: acme
    keys: ["{ACME_KEY}"]
channels:
  - name: claude
    type: anthropic
    base_url: {loop_fake.url}
    api_key: sk-ant-test
    models: {{claude-loop-think: loop-think}}
"""
    first, second = await make_relay(config), await make_relay(config)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    ask = {"model": "claude-loop-think", "reasoning_effort": "low", "tools": tools, "messages": [{"role": "user", "content": "weather?"}]}
    resp, answer = await first.post_json("/v1/chat/completions", ask)
    call = answer["choices"][0]["message"]["tool_calls"][0]
    turn = {**ask, "messages": [*ask["messages"], {"role": "assistant", "content": None, "tool_calls": [call]},  # no signature
                                {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]}
    resp, answer = await second.post_json("/v1/chat/completions", turn)
    assert resp.status == 200 and "reasoning_effort" not in resp.headers.get("x-relay-ignored-params", "")
    assistant = [m for m in loop_fake.requests[-1].body["messages"] if m["role"] == "assistant"][-1]
    assert assistant["content"][0] == SIGNATURE_BLOCK
