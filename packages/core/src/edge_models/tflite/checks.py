"""Check a .tflite against what LiteRT-LM / MediaPipe require (docs/file-formats.md).

Runtime-safe: needs only ai-edge-litert and numpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class TFLiteCheckError(ValueError):
    pass


@dataclass(frozen=True)
class TFLiteInfo:
    prefill_lengths: dict[str, int]  # signature name -> tokens length
    num_layers: int
    kv_len: int
    vocab_size: int
    prefill_logits: bool
    decode_windows: dict[str, int] = field(default_factory=dict)  # step_<W> signature -> cache slots it reads
    prefill_windows: dict[str, tuple[int, int]] = field(default_factory=dict)  # fill_<N>_<W> -> (N, W)
    # verify_<K>[_<W>] -> (K, W or None): K tokens scored at once, logits for each (speculative decoding)
    verify: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    lora_inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)  # LoRA input -> shape (`--lora-rank`)
    # shortlist_<K>[_<W>] -> (K, W or None): one token decoded through the two-stage head (top K ids and logits)
    shortlists: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    # State a layer carries instead of a KV cache (`kv_cache_c_<i>`, `kv_cache_c_<i>_recurrent`): input name -> shape.
    # Updated in place like the KV cache; it cannot be rolled back by overwriting slots.
    state_inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def signatures(self) -> list[str]:
        return [
            *self.prefill_lengths,
            "decode",
            *self.decode_windows,
            *self.prefill_windows,
            *self.verify,
            *self.shortlists,
        ]


_PREFILL = re.compile(r"^prefill(_\d+)?$")
_STEP = re.compile(r"^step_(\d+)$")
_FILL = re.compile(r"^fill_(\d+)_(\d+)$")
_VERIFY = re.compile(r"^verify_(\d+)(?:_(\d+))?$")
_SHORTLIST = re.compile(r"^shortlist_(\d+)(?:_(\d+))?$")
# Per-layer state beside the KV cache, under the prefix LiteRT-LM binds in place: `kv_cache_c_<i>` a convolution's
# last inputs, `kv_cache_c_<i>_recurrent` a gated delta-net's recurrent state.
_STATE = re.compile(r"^kv_cache_c_(\d+)(_recurrent)?$")
# A verify signature of a model with state also outputs every state input after each of its K tokens, named this
# prefix + the state's name without `kv_cache_` ([K, ...], e.g. `state_steps_c_3_recurrent`): the runtime keeps the
# one after the last accepted token, which undoes rejected drafts (slots past a position are overwritten later in a
# KV cache; a state has no such slots).
STATE_STEPS_PREFIX = "state_steps_"


def open_interpreter(path: str | Path, threads: int | None = None):
    from ai_edge_litert.interpreter import Interpreter

    path = Path(path)
    if not path.is_file():
        raise TFLiteCheckError(f"{path}: no such file")
    try:
        return Interpreter(model_path=str(path), num_threads=threads or os_threads())
    except Exception as e:
        raise TFLiteCheckError(f"{path}: not a loadable .tflite model ({e})") from None


def os_threads() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)))


def check_tflite(path: str | Path, num_layers: int | None = None, interpreter=None) -> TFLiteInfo:
    """Raise TFLiteCheckError listing every problem; return what the runtime needs to know."""
    it = interpreter or open_interpreter(path)
    sigs = it.get_signature_list()
    problems: list[str] = []
    if "decode" not in sigs:
        problems.append("no 'decode' signature")
    prefills = sorted((s for s in sigs if _PREFILL.match(s)), key=lambda s: (len(s), s))
    if not prefills:
        problems.append("no 'prefill' or 'prefill_<N>' signature")
    if problems:
        raise TFLiteCheckError(f"{path}: {'; '.join(problems)} (signatures found: {sorted(sigs)})")

    steps = {m.string: int(m.group(1)) for m in map(_STEP.match, sigs) if m}
    fills = {m.string: (int(m.group(1)), int(m.group(2))) for m in map(_FILL.match, sigs) if m}
    verify = {
        m.string: (int(m.group(1)), int(m.group(2)) if m.group(2) else None) for m in map(_VERIFY.match, sigs) if m
    }
    shortlists = {
        m.string: (int(m.group(1)), int(m.group(2)) if m.group(2) else None) for m in map(_SHORTLIST.match, sigs) if m
    }
    details = {}
    for name in [*prefills, "decode", *steps, *fills, *verify, *shortlists]:
        runner = it.get_signature_runner(name)
        details[name] = (runner.get_input_details(), runner.get_output_details())
    states = {
        m.string: tuple(int(d) for d in details["decode"][0][m.string]["shape"])
        for m in map(_STATE.match, details["decode"][0])
        if m
    }
    state_layers = {int(_STATE.match(n).group(1)) for n in states}
    layers = num_layers
    if layers is None:
        layers = sum(1 for k in details["decode"][0] if k.startswith("kv_cache_k_")) + len(state_layers)
    attention_layers = [i for i in range(layers) if i not in state_layers]
    if not attention_layers:
        raise TFLiteCheckError(f"{path}: no KV cache inputs (expected kv_cache_k_<i> / kv_cache_v_<i>)")

    kv_len = vocab = None
    lengths: dict[str, int] = {}
    prefill_logits = True
    for name, (inputs, outputs) in details.items():
        where = f"signature {name!r}"
        expected_in = {"tokens", "input_pos", *states} | {f"kv_cache_{kv}_{i}" for i in attention_layers for kv in "kv"}
        missing = sorted(expected_in - set(inputs))
        # LoRA slots (`convert --lora-rank`): the same matrices in every signature.
        lora = {n for n in inputs if n.startswith("lora_")}
        if lora != {n for n in details["decode"][0] if n.startswith("lora_")}:
            problems.append(f"{where} does not take the same LoRA inputs as 'decode'")
        extra = sorted(set(inputs) - expected_in - {"mask"} - lora)
        if missing:
            problems.append(f"{where} lacks inputs {missing}")
        if extra:
            problems.append(f"{where} has unexpected inputs {extra} (positional names fail in LiteRT-LM)")
        if "tokens" in inputs:
            t = inputs["tokens"]
            if t["dtype"] != np.int32 or len(t["shape"]) != 2:
                problems.append(f"{where}: tokens must be int32 [1, T], found {t['dtype'].__name__} {list(t['shape'])}")
            else:
                lengths[name] = int(t["shape"][1])
        if "input_pos" in inputs and inputs["input_pos"]["dtype"] != np.int32:
            problems.append(f"{where}: input_pos must be int32")
        for state, shape in states.items():
            found = outputs.get(state)
            if found is None or tuple(int(d) for d in found["shape"]) != shape:
                problems.append(f"{where} lacks output {state} of shape {list(shape)} (the state it updates)")
        for i in attention_layers:
            k, v = inputs.get(f"kv_cache_k_{i}"), inputs.get(f"kv_cache_v_{i}")
            if k is None or v is None:
                continue
            ks, vs = list(k["shape"]), list(v["shape"])
            if len(ks) != 4 or len(vs) != 4 or ks[1] != vs[1] or ks[2] != vs[3] or ks[3] != vs[2]:
                problems.append(
                    f"{where}: KV layer {i} must be K [1, heads, KV, head_dim] and V [1, heads, head_dim, KV]; "
                    f"found K {ks}, V {vs}"
                )
                continue
            if kv_len is None:
                kv_len = ks[2]
            elif ks[2] != kv_len:
                problems.append(f"{where}: layer {i} has KV length {ks[2]}, others {kv_len}")
            for kv in "kv":
                if f"kv_cache_{kv}_{i}" not in outputs:
                    problems.append(f"{where} lacks output kv_cache_{kv}_{i}")
        if name in shortlists:
            k = shortlists[name][0]
            for out in ("ids", "logits"):
                if out not in outputs or list(outputs[out]["shape"]) != [1, 1, k]:
                    problems.append(f"{where} lacks output {out!r} of shape [1, 1, {k}]")
        elif "logits" in outputs:
            shape = list(outputs["logits"]["shape"])
            vocab = shape[-1] if vocab is None else vocab
        elif name == "decode" or name in steps or name in verify:
            problems.append(f"signature {name!r} lacks output 'logits'")
        else:
            prefill_logits = False
    expected_lengths = [
        ("decode", 1),
        *((s, 1) for s in [*steps, *shortlists]),
        *((s, n) for s, (n, _) in fills.items()),
    ]
    for name, expected in [*expected_lengths, *((s, k) for s, (k, _) in verify.items())]:
        if lengths.get(name) not in (None, expected):
            problems.append(f"{name} takes {lengths[name]} tokens, expected {expected}")
    if problems:
        raise TFLiteCheckError(f"{path}: not a valid LiteRT-LM model:\n  " + "\n  ".join(problems))
    return TFLiteInfo(
        prefill_lengths={p: lengths[p] for p in prefills},
        num_layers=layers,
        kv_len=int(kv_len),
        vocab_size=int(vocab),
        prefill_logits=prefill_logits,
        decode_windows=steps,
        prefill_windows=fills,
        verify=verify,
        shortlists=shortlists,
        lora_inputs={
            n: tuple(int(d) for d in v["shape"]) for n, v in details["decode"][0].items() if n.startswith("lora_")
        },
        state_inputs=states,
    )
