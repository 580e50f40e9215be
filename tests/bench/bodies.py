"""Fixed upstream bodies the benchmark's nginx serves: the shapes real upstreams send."""
from __future__ import annotations

import json

WORDS = "The quick brown fox jumps over the lazy dog and keeps on running far away".split()
CHUNKS = 50


def _sse(frames: list[dict], event_lines: bool = False) -> str:
    out = []
    for f in frames:
        data = json.dumps(f, separators=(",", ":"))
        out.append(f"event: {f['type']}\ndata: {data}\n\n" if event_lines else f"data: {data}\n\n")
    return "".join(out)


def openai_json() -> str:
    text = " ".join(WORDS[i % len(WORDS)] for i in range(CHUNKS))
    return json.dumps({"id": "chatcmpl-bench", "object": "chat.completion", "created": 1763780000, "model": "gpt-bench",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                                    "logprobs": None, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 20, "completion_tokens": CHUNKS, "total_tokens": 20 + CHUNKS}})


def openai_sse() -> str:
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1763780000, "model": "gpt-bench"}
    frames = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    frames += [{**base, "choices": [{"index": 0, "delta": {"content": WORDS[i % len(WORDS)] + " "}, "finish_reason": None}]}
               for i in range(CHUNKS)]
    frames += [{**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
               {**base, "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": CHUNKS, "total_tokens": 20 + CHUNKS}}]
    return _sse(frames) + "data: [DONE]\n\n"


def anthropic_json() -> str:
    text = " ".join(WORDS[i % len(WORDS)] for i in range(CHUNKS))
    return json.dumps({"id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench",
                       "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                       "usage": {"input_tokens": 20, "output_tokens": CHUNKS, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}})


def anthropic_sse() -> str:
    frames = [{"type": "message_start", "message": {"id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench",
                                                    "content": [], "stop_reason": None, "usage": {"input_tokens": 20, "output_tokens": 1}}},
              {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]
    frames += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": WORDS[i % len(WORDS)] + " "}}
               for i in range(CHUNKS)]
    frames += [{"type": "content_block_stop", "index": 0},
               {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": CHUNKS}},
               {"type": "message_stop"}]
    return _sse(frames, event_lines=True)


def responses_sse() -> str:
    resp = {"id": "resp_bench", "object": "response", "created_at": 1763780000, "status": "in_progress", "model": "gpt-bench", "output": []}
    item = {"id": "msg_bench", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    frames = [{"type": "response.created", "response": resp}, {"type": "response.in_progress", "response": resp},
              {"type": "response.output_item.added", "output_index": 0, "item": item},
              {"type": "response.content_part.added", "item_id": "msg_bench", "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "text": "", "annotations": []}}]
    frames += [{"type": "response.output_text.delta", "item_id": "msg_bench", "output_index": 0, "content_index": 0,
                "delta": WORDS[i % len(WORDS)] + " "} for i in range(CHUNKS)]
    frames += [{"type": "response.completed", "response": {**resp, "status": "completed",
                "usage": {"input_tokens": 20, "output_tokens": CHUNKS, "total_tokens": 20 + CHUNKS}}}]
    for i, f in enumerate(frames):
        f["sequence_number"] = i
    return _sse(frames, event_lines=True)


def responses_json() -> str:
    text = " ".join(WORDS[i % len(WORDS)] for i in range(CHUNKS))
    return json.dumps({"id": "resp_bench", "object": "response", "created_at": 1763780000, "status": "completed", "model": "gpt-bench",
                       "output": [{"id": "msg_bench", "type": "message", "role": "assistant", "status": "completed",
                                   "content": [{"type": "output_text", "text": text, "annotations": []}]}],
                       "usage": {"input_tokens": 20, "output_tokens": CHUNKS, "total_tokens": 20 + CHUNKS}})


# path prefix on nginx -> (file under v1/, content type, body)
UPSTREAMS = {
    "oa-json": ("chat/completions", "application/json", openai_json),
    "oa-sse": ("chat/completions", "text/event-stream", openai_sse),
    "an-json": ("messages", "application/json", anthropic_json),
    "an-sse": ("messages", "text/event-stream", anthropic_sse),
    "na-json": ("responses", "application/json", responses_json),
    "na-sse": ("responses", "text/event-stream", responses_sse),
    "ro-sse": ("responses", "text/event-stream", responses_sse),  # behind an `api: responses` channel
}
