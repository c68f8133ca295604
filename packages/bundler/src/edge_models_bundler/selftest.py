"""A self-test inside every bundle: a prompt and the greedy tokens the converted model produced for it.

Recorded when the bundle is written (by running the written file in our runtime), replayed by
`edge-models bundle check --run FILE` in our runtime and, when `litert-lm-api` is installed, in LiteRT-LM. A bundle
that decodes to garbage on some runtime then shows up on the machine at hand, before it ships.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edge_models.tflite.lora import LITERT_LM_RANKS, rank_of, write_adapter_file, zero_adapter

PROMPT = "Here is a short story about the sea."
TOKENS = 16


@dataclass
class ReplayResult:
    runtime: str
    agreed: bool
    detail: str
    ran: bool = True  # False: the runtime is not at hand here (said so, not counted as a failure)


@dataclass
class SelfTestReport:
    prompt: str
    expected: str
    results: list[ReplayResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.agreed for r in self.results if r.ran)


def record(bundle: str | Path, prompt: str = PROMPT, max_tokens: int = TOKENS) -> dict:
    """Greedy tokens of `bundle` (as our runtime reads it) for `prompt` as plain text after the start token."""
    from edge_models.runtime import Generator

    gen = Generator.open(bundle)
    ids = gen.encode(prompt)
    # Plain decoding, the way every runtime decodes (speculation on an int8 file may part from it at a near-tie).
    tokens = list(gen.generate_ids(ids, max_tokens, speculate=False))
    return {"prompt": prompt, "ids": ids, "tokens": tokens, "max_tokens": max_tokens}


def replay(bundle: str | Path, threads: int | None = None) -> SelfTestReport:
    """Run the bundle's recorded prompt in every runtime at hand and compare with the recorded tokens."""
    from edge_models.runtime import Generator, read_bundle
    from edge_models.runtime.speculative import common_prefix

    contents = read_bundle(bundle)
    test = contents.self_test
    if test is None:
        raise ValueError(f"{bundle}: no self-test recorded (bundles written by edge-models 0.1 with `bundle` have one)")
    gen = Generator.open(bundle, threads=threads)
    expected = gen.tokenizer.decode(test["tokens"])
    report = SelfTestReport(test["prompt"], expected)
    ids = gen.encode(test["prompt"])
    if ids != test["ids"]:
        report.results.append(ReplayResult("edge-models", False, f"the prompt encodes to {ids}, not {test['ids']}"))
    else:
        ours = list(gen.generate_ids(ids, test["max_tokens"], speculate=False))
        same = common_prefix(ours, test["tokens"])
        report.results.append(
            ReplayResult("edge-models", ours == test["tokens"], f"{same}/{len(test['tokens'])} tokens agree")
        )
    try:
        import litert_lm  # noqa: F401 - only to know whether LiteRT-LM is at hand
    except ImportError:
        detail = "litert-lm-api is not installed here (pip install litert-lm-api)"
        report.results.append(ReplayResult("LiteRT-LM", False, detail, ran=False))
        return report
    lora = gen.model.lora_spec
    if lora and rank_of(lora) not in LITERT_LM_RANKS:
        detail = f"not run: LoRA rank {rank_of(lora)} (LiteRT-LM binds adapters only at {LITERT_LM_RANKS})"
        report.results.append(ReplayResult("LiteRT-LM", False, detail))
        return report
    with tempfile.TemporaryDirectory() as tmp:
        zeros = None
        if lora:
            # LiteRT-LM leaves LoRA inputs unset without an adapter: the base model is the all-zero one.
            zeros = Path(tmp) / "zeros.bin"
            with zeros.open("wb") as f:
                write_adapter_file(zero_adapter(lora), rank_of(lora), f)
        text = litert_lm_greedy(Path(bundle), test["prompt"], test["max_tokens"], zeros)
    # LiteRT-LM's C API returns C strings: text past a NUL byte (a byte-level token of a random model) is lost.
    comparable = expected.split("\x00")[0]
    same = text == comparable
    detail = "same text" if same else f"got {text!r}"
    if same and comparable != expected:
        detail += " (up to a NUL byte, which LiteRT-LM's C API cannot return)"
    report.results.append(ReplayResult("LiteRT-LM", same, detail))
    return report


def litert_lm_greedy(bundle: Path, prompt: str, max_tokens: int, lora: Path | None = None) -> str:
    """LiteRT-LM's greedy text for `prompt` as plain text (the engine adds the start token itself); `lora`: an
    adapter file bound for the session."""
    import litert_lm
    from edge_models.tflite.lora import read_adapter_file

    litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
    rank = litert_lm.LoraRankConfig(lora_rank=read_adapter_file(lora)[1]) if lora else None
    engine = litert_lm.Engine(str(bundle), lora_rank_config=rank)
    try:
        session = engine.create_session(
            apply_prompt_template=False,
            sampler_config=litert_lm.SamplerConfig(top_k=1),
            max_output_tokens=max_tokens,
            lora_config=litert_lm.LoraConfig(lora_path=str(lora)) if lora else None,
        )
        try:
            session.run_prefill([prompt])
            return session.run_decode().texts[0]
        finally:
            session.close()
    finally:
        engine.close()
