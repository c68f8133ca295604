"""Tool calling on a real model: `--tool-choice required` validity, and what `auto` costs on free text.

    python benchmarks/bench_tools.py [--model-file /tmp/demo_art/gemma3-270m/model.task] [--repeats 3]

Required: every prompt below, greedy and sampled (T=0.8, top-k 40, top-p 0.95, 3 seeds), speculation on; a reply
counts as valid when our parser reads exactly one call of a tool that exists, with every required argument, no
argument the tool does not take, and enum arguments within their enum (checked here, not by the grammar).

Auto: prompts that ask for text, greedy, without speculation, once under the `auto` grammar of the tools and once
with no grammar: the texts must be equal wherever the free reply is valid UTF-8 and opens no call, and decode
tokens/s are compared (alternated `--repeats` times).
"""

from __future__ import annotations

import argparse
import platform
import statistics

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city, e.g. Paris"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "set_alarm",
            "description": "Set an alarm",
            "parameters": {
                "type": "object",
                "properties": {"hour": {"type": "integer"}, "minute": {"type": "integer"}, "label": {"type": "string"}},
                "required": ["hour", "minute"],
            },
        },
    },
]
PROMPTS = [
    "What is the weather in Paris right now?",
    "Wake me up at 6:30 tomorrow.",
    "Is it cold in Oslo? Tell me in fahrenheit.",
    "Set an alarm for 7 in the morning called gym.",
    "Do I need an umbrella in London today?",
]
FREE_PROMPTS = [
    "Write two sentences about the sea.",
    "Tell me a short story about a cat.",
    "Explain what a rainbow is.",
]


def valid(call, tools) -> bool:
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    if call.name not in by_name:
        return False
    params = by_name[call.name]
    if not set(params.get("required", [])) <= set(call.arguments) <= set(params["properties"]):
        return False
    kinds = {"string": str, "integer": int}
    for key, value in call.arguments.items():
        spec = params["properties"][key]
        if not isinstance(value, kinds[spec["type"]]) or ("enum" in spec and value not in spec["enum"]):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-file", default="/tmp/demo_art/gemma3-270m/model.task")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    from edge_models.runtime import ChatSession, Generator, SamplerConfig, ToolError
    from edge_models.runtime.tools import normalize_tools, tool_constraint

    gen = Generator.open(args.model_file)
    tools = normalize_tools(TOOLS)
    print(f"{args.model_file}: call syntax {gen.tool_format.name}; {platform.processor() or platform.machine()}")
    samplers = [("greedy", None)] + [
        (f"sampled seed {s}", SamplerConfig(temperature=0.8, top_k=40, top_p=0.95, seed=s)) for s in range(3)
    ]
    good = total = 0
    for prompt in PROMPTS:
        for label, sampler in samplers:
            session = ChatSession(gen, max_tokens=args.max_tokens, sampler=sampler, tools=tools, tool_choice="required")
            total += 1
            try:
                reply = "".join(session.send(prompt))
                ok = len(session.last_calls) == 1 and valid(session.last_calls[0], tools)
            except ToolError as e:
                reply, ok = f"error: {e}", False
            good += ok
            if label == "greedy":
                print(f"  required, {label}: {prompt!r} -> {reply.strip()!r}")
    print(f"required: {good}/{total} replies are one valid call")

    # Free text: the prompts without the tools (with them, Gemma 3 270M recites the tool instructions and opens a
    # call), decoded under the `auto` grammar and under none: what the grammar costs where the model writes text.
    gen.speculate = False
    auto_grammar = tool_constraint(tools, gen.tool_format, "auto", gen.lark_literal)
    rates: dict[str, list[float]] = {"none": [], "auto": []}
    same = compared = 0
    for _ in range(args.repeats):
        for prompt in FREE_PROMPTS:
            texts = {}
            for mode in ("none", "auto"):
                constraint = auto_grammar if mode == "auto" else None
                session = ChatSession(gen, max_tokens=args.max_tokens, constraint=constraint)
                texts[mode] = "".join(session.send(prompt))
                rates[mode].append(gen.last_stats.decode_tokens_per_s)
            if gen.tool_format.open not in texts["none"] and "\ufffd" not in texts["none"]:
                compared += 1
                same += texts["none"] == texts["auto"]
    none, auto = statistics.median(rates["none"]), statistics.median(rates["auto"])
    print(
        f"auto vs no grammar, greedy free text: {same}/{compared} identical; decode {auto:.1f} vs {none:.1f} tok/s "
        f"(median of {len(rates['auto'])}), {auto / none:.2f}x"
    )


if __name__ == "__main__":
    main()
