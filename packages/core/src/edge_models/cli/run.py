"""Verbs that run a converted model: generate, chat, bench."""

from __future__ import annotations

from pathlib import Path

import click

from edge_models.cli.base import CHECKPOINT, cli, friendly, logged
from edge_models.io import console


def _model_options(func):
    """How FILE is opened and sampled: shared by generate and chat."""
    options = [
        click.argument("file", type=click.Path(exists=True, path_type=Path)),
        click.option(
            "--tokenizer",
            type=click.Path(exists=True, path_type=Path),
            help="tokenizer.json or tokenizer.model (bundles carry theirs) [beside a .tflite]",
        ),
        click.option("--model", "model_name", help="registered model whose defaults fill what the checkpoint lacks"),
        click.option("--temperature", default=0.0, show_default=True, help="0 means greedy"),
        click.option("--top-k", default=0, show_default=True),
        click.option("--top-p", default=1.0, show_default=True),
        click.option("--min-p", default=0.0, show_default=True),
        click.option("--repetition-penalty", default=1.0, show_default=True),
        click.option("--seed", default=0, show_default=True),
        click.option("--stop-token", "stop_tokens", multiple=True, help="extra stop token (repeatable)"),
        click.option(
            "--draft",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="a smaller converted model with the same tokenizer that drafts tokens (instead of prompt lookup)",
        ),
        click.option(
            "--lora",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="an adapter file (`edge-models lora pack`) for a file converted with --lora-rank",
        ),
        click.option(
            "--no-speculate",
            is_flag=True,
            help="decode one token per step (by default prompt-lookup drafts are verified several at a time "
            "where the file has verify signatures; the output is the same)",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _constraint_options(func):
    """What every reply must match: shared by generate and chat (one at a time)."""
    options = [
        click.option(
            "--json-schema",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="a JSON schema file the output must satisfy",
        ),
        click.option("--json", "json_object", is_flag=True, help="the output is a JSON object (any)"),
        click.option("--regex", help="a regular expression the whole output matches"),
        click.option(
            "--grammar",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="a Lark grammar file (its `start` rule) the output matches",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _constraint(json_schema, json_object, regex, grammar):
    """The one constraint given, checked before the model loads (a bad schema or grammar fails fast)."""
    from edge_models.runtime import Constraint

    given = [
        name
        for name, v in (
            ("--json-schema", json_schema),
            ("--json", json_object),
            ("--regex", regex),
            ("--grammar", grammar),
        )
        if v
    ]
    if len(given) > 1:
        raise click.UsageError(f"give one of {', '.join(given)}, not several")
    if json_schema is not None:
        constraint = Constraint.json_schema(json_schema)
    elif json_object:
        constraint = Constraint.any_json()
    elif regex is not None:
        constraint = Constraint.regex(regex)
    elif grammar is not None:
        constraint = Constraint.lark(grammar)
    else:
        return None
    constraint.grammar()
    return constraint


def _unmet(stats) -> str | None:
    """Why a constrained output is incomplete, or None."""
    if stats.constraint_met is False:
        return f"the output is incomplete: {stats.stop_reason} before the grammar's end (raise --max-tokens)"
    return None


def _open(file, tokenizer, model_name, stop_tokens, no_speculate, draft, lora, **sampling):
    from edge_models.runtime import Generator, SamplerConfig

    gen = Generator.open(file, tokenizer=tokenizer, model=model_name, extra_stop_tokens=stop_tokens)
    if lora is not None:
        from edge_models.tflite.lora import read_adapter_file

        gen.model.set_lora(read_adapter_file(lora)[0])
    gen.speculate = not no_speculate
    if draft is not None:
        gen.attach_draft(draft)
    return gen, SamplerConfig(**sampling)


@cli.command()
@_model_options
@_constraint_options
@click.option("--prompt", required=True)
@click.option("--max-tokens", default=128, show_default=True)
@click.option("--chat", is_flag=True, help="wrap the prompt in the model's chat template")
@logged
@friendly
def generate(
    file,
    tokenizer,
    model_name,
    prompt,
    max_tokens,
    chat,
    stop_tokens,
    json_schema,
    json_object,
    regex,
    grammar,
    **options,
) -> None:
    """Generate text from a .tflite, .task or .litertlm FILE, streamed to stdout.

    --json-schema, --json, --regex or --grammar constrain the output: it always matches, and ends at the grammar's
    end or a stop token (needs `pip install 'edge-models[structured]'`).

    A .tflite takes the tokenizer, special tokens and chat template of the checkpoint directory its tokenizer is
    in (tokenizer_config.json, generation_config.json, chat_template.jinja). An encoder-decoder (T5) file encodes the
    prompt and decodes the answer."""
    from edge_models.cli.base import UserError
    from edge_models.runtime.seq2seq import is_seq2seq_file

    constraint = _constraint(json_schema, json_object, regex, grammar)
    if file.suffix == ".tflite" and is_seq2seq_file(file):
        if constraint is not None:
            raise UserError(f"{file}: structured output is for decoder-only models, not an encoder-decoder file")
        from edge_models.cli.encoders import generate_seq2seq_command
        from edge_models.runtime import SamplerConfig

        sampling = {k: v for k, v in options.items() if k not in ("no_speculate", "draft", "lora")}
        return generate_seq2seq_command(file, tokenizer, prompt, max_tokens, stop_tokens, SamplerConfig(**sampling))
    gen, sampler = _open(file, tokenizer, model_name, stop_tokens, **options)
    for piece in gen.stream(prompt, max_tokens=max_tokens, sampler=sampler, chat=chat, constraint=constraint):
        console.out(piece, end="")
    console.out()
    console.err(gen.last_stats.summary())
    problem = _unmet(gen.last_stats)
    if problem:
        raise UserError(problem)


CHAT_HELP = "/reset starts over, /system TEXT sets the system message (and starts over), /quit ends; so does Ctrl-D"
TOOL_HELP = "after a tool call, type each call's result on a line of its own (text or JSON)"


def _print_calls(calls) -> None:
    """Each parsed call as one JSON line on stdout, for scripts to read."""
    import json

    for call in calls:
        console.out(json.dumps({"tool_call": call.to_dict()}, ensure_ascii=False))


@cli.command()
@_model_options
@_constraint_options
@click.option("--system", "system", default=None, help="system message opening the conversation")
@click.option("--max-tokens", default=256, show_default=True, help="most tokens per reply")
@click.option(
    "--no-cache-reuse", is_flag=True, help="prefill the whole conversation every turn (the baseline, for timing)"
)
@click.option(
    "--tools",
    "tools_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON list of function definitions (OpenAI style) the model may call",
)
@click.option(
    "--tool-choice",
    type=click.Choice(["auto", "required", "none"]),
    default="auto",
    show_default=True,
    help="auto: answer or call (a call it opens is always valid); required: every reply is a valid call; "
    "none: the tools are not offered",
)
@logged
@friendly
def chat(
    file,
    tokenizer,
    model_name,
    system,
    max_tokens,
    no_cache_reuse,
    tools_file,
    tool_choice,
    stop_tokens,
    json_schema,
    json_object,
    regex,
    grammar,
    **options,
) -> None:
    """Talk with the model in FILE, turn by turn, in its chat template.

    The KV cache is kept across turns, so each turn prefills only its own tokens. Reads standard input line by
    line, so it can be scripted: `printf 'Hi\\n/reset\\nHello\\n' | edge-models chat model.litertlm`.

    With --tools the model may call the functions defined in the file (rendered through the chat template's
    `tools`); each call it makes is printed as a JSON line `{"tool_call": {"name": ..., "arguments": {...}}}`, and
    the next input lines are the calls' results, one line per call."""
    import sys

    from edge_models.runtime import ChatSession, ConversationFullError, ToolError, read_tools

    constraint = _constraint(json_schema, json_object, regex, grammar)
    tools = read_tools(tools_file) if tools_file is not None else None
    if tools and constraint is not None and tool_choice != "none":
        raise click.UsageError("give --tools or a constraint (--json-schema, --json, --regex, --grammar), not both")
    gen, sampler = _open(file, tokenizer, model_name, stop_tokens, **options)
    session = ChatSession(
        gen,
        system=system,
        max_tokens=max_tokens,
        sampler=sampler,
        reuse_cache=not no_cache_reuse,
        constraint=constraint,
        tools=tools,
        tool_choice=tool_choice,
    )
    if session.tools and session.constraint is not None:
        # A tool whose schema llguidance cannot use fails before the first turn.
        gen.guide(session.constraint)
    interactive = sys.stdin.isatty()
    if interactive:
        console.err(f"chatting with {file.name}: {CHAT_HELP}" + (f"; {TOOL_HELP}" if session.tools else ""))
    turn = 0
    while True:
        if interactive:
            console.out("> ", end="")
        line = sys.stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        if text == "/reset":
            session.reset()
            console.err("[new conversation]")
            continue
        if text == "/system" or text.startswith("/system "):
            session.system = text[len("/system") :].strip() or None
            session.reset()
            console.err(f"[new conversation, system message {session.system!r}]")
            continue
        if text.startswith("/"):
            console.err(f"unknown command {text.split()[0]}: {CHAT_HELP}")
            continue
        reply = session.send(text)
        while reply is not None:
            try:
                for piece in reply:
                    console.out(piece, end="")
            except ConversationFullError as e:
                console.err(str(e))
                break
            except ToolError as e:
                console.out()
                console.err(f"error: {e}")
                break
            turn += 1
            console.out()
            console.err(f"[turn {turn}] {gen.last_stats.summary()[1:-1]}")
            problem = _unmet(gen.last_stats)
            if problem:
                console.err(f"error: {problem}")
            reply = None
            if session.last_calls:
                _print_calls(session.last_calls)
                results = []
                for call in session.last_calls:
                    if interactive:
                        console.out(f"{call.name} result> ", end="")
                    line = sys.stdin.readline()
                    if not line:
                        console.err(f"[the input ended before the result of {call.name}]")
                        return
                    results.append(line.strip())
                reply = session.send_tool_results(results)


@cli.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--decode-tokens", default=64, show_default=True)
@click.option("--threads", default=None, type=int)
@click.option(
    "--compare-torch", "torch_model", default=None, help="registered model name: run PyTorch eager side by side"
)
@click.option("--checkpoint", type=CHECKPOINT, help="weights for --compare-torch")
@click.option("--tiny", is_flag=True, help="--compare-torch on the model's tiny config (random weights)")
@click.option(
    "--tokenizer", type=click.Path(exists=True, path_type=Path), help="for the generation rows [bundled/beside]"
)
@click.option("--prompt", default=None, help="prompt of the generation rows [a built-in input-grounded one]")
@click.option("--no-speculate", is_flag=True, help="skip the plain-vs-speculative generation rows")
@click.option(
    "--lora",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="adapter file bound while measuring (file converted with --lora-rank)",
)
@click.option(
    "--engine",
    type=click.Choice(["compiled", "interpreter", "both"]),
    default="compiled",
    show_default=True,
    help="LiteRT CompiledModel with in-place KV buffers, or the plain signature-runner loop",
)
@logged
@friendly
def bench(
    file, decode_tokens, threads, torch_model, checkpoint, tiny, tokenizer, prompt, no_speculate, lora, engine
) -> None:
    """Prefill/decode tokens/s, time to first token, peak RSS and size of a .tflite, .task or .litertlm; then, where
    the file has verify signatures and a tokenizer, greedy generation plain and speculative side by side.

    --compare-torch runs the same model in PyTorch: on --checkpoint, or without it the registered model's published
    shape (or tiny config) with random weights, when that is the file's shape; another shape is refused."""
    from edge_models.tflite.checks import os_threads
    from edge_models.tflite.reading import decode_weight_bytes, model_shape
    from edge_models.tools.bench import (
        GROUNDED_PROMPT,
        bench_generation,
        bench_loads,
        bench_tflite,
        bench_torch_model,
        format_bandwidth,
        format_generation,
        format_loads,
        format_table,
        read_bandwidth,
        tflite_view,
        torch_model_of_file,
    )

    engines = ["compiled", "interpreter"] if engine == "both" else [engine]
    tflite = tflite_view(file)
    shape = model_shape(tflite)
    # A PyTorch model of another shape is refused before minutes of measuring.
    reference = torch_model_of_file(torch_model, checkpoint, shape, tiny) if torch_model else None
    rows = [bench_tflite(file, decode_tokens=decode_tokens, threads=threads, engine=e, lora=lora) for e in engines]
    if reference is not None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        build, label = reference  # built after the file's rows: its memory is not theirs
        rows.append(bench_torch_model(build(), label, list(rows[0].prefill_tok_s) or [8], decode_tokens))
    console.out(format_table(rows))
    console.out(format_loads(bench_loads(file, shape.signatures), rows[0].size_bytes, rows[0].kv_bytes))
    bandwidth = read_bandwidth(threads or os_threads())
    row = rows[0]
    console.out(format_bandwidth("decode", row.decode_tok_s, decode_weight_bytes(tflite), bandwidth))
    if row.shortlist_tok_s:
        shortlist_bytes = decode_weight_bytes(tflite, shortlist=True)
        console.out(format_bandwidth("the shortlist", row.shortlist_tok_s, shortlist_bytes, bandwidth))
    if no_speculate:
        return
    from edge_models.runtime import TokenizerError

    try:
        generation = bench_generation(file, tokenizer, prompt or GROUNDED_PROMPT, decode_tokens, threads, lora)
    except (TokenizerError, ValueError) as e:
        console.err(f"no generation rows: {e}")
        return
    if not generation:
        console.err("no verify_<K> signatures in the file: no speculative generation rows (convert with --verify 8)")
        return
    console.out()
    console.out(format_generation(generation))
