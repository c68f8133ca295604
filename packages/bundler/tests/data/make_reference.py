"""Regenerate the checked-in MediaPipe reference outputs (run with a Python that has mediapipe==0.10.35).

    /work/venv-mp/bin/python packages/bundler/tests/data/make_reference.py

Writes mediapipe-0.10.35/metadata_cases.json (the METADATA bytes MediaPipe's bundler writes for
each combination of template options) and mediapipe-0.10.35/full.task.bin (a whole bundle made from
a stand-in model file and a tiny SentencePiece tokenizer; the test re-bundles its entries).
"""

import itertools
import json
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from mediapipe.tasks.python.genai import bundler
from spm_util import train_sentencepiece

OUT = HERE / "mediapipe-0.10.35"
AFFIXES = [
    "prompt_prefix_user",
    "prompt_suffix_user",
    "prompt_prefix_model",
    "prompt_suffix_model",
    "prompt_prefix_system",
    "prompt_suffix_system",
]
FULL = {
    "start_token": "<s>",
    "stop_tokens": ["</s>", "<end_of_turn>"],
    "system_prompt": "Be brief.",
    "prompt_prefix_user": "<start_of_turn>user\n",
    "prompt_suffix_user": "<end_of_turn>\n",
    "prompt_prefix_model": "<start_of_turn>model\n",
    "prompt_suffix_model": "<end_of_turn>\n",
    "user_role_token": "user",
    "system_role_token": "system",
    "model_role_token": "model",
    "end_role_token": "<end_of_turn>",
    "enable_bytes_to_unicode_mapping": True,
}


def cases():
    yield {"start_token": "<s>", "stop_tokens": ["</s>"]}
    yield dict(FULL)
    yield {"start_token": "<s>", "stop_tokens": ["</s>", "<end_of_turn>"], "prompt_prefix_user": "ünï\u00e7ode ✓"}
    for n in range(1, len(AFFIXES) + 1):
        for combo in itertools.combinations(AFFIXES, n):
            for system_prompt in (None, "SP"):
                if system_prompt and any("system" in a for a in combo):
                    continue  # the reference rejects this pair
                case = {"start_token": "<s>", "stop_tokens": ["</s>"], **{a: a.upper() for a in combo}}
                if system_prompt:
                    case["system_prompt"] = system_prompt
                yield case


def main() -> None:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tok = train_sentencepiece(tmp / "tok.model")
        model = tmp / "model.tflite"
        model.write_bytes(bytes(range(256)) * 7 + b"end")  # a stand-in: the reference does not read it
        results = []
        for case in cases():
            out = tmp / "out.task"
            bundler.create_bundle(
                bundler.BundleConfig(
                    tflite_model=str(model), tokenizer_model=str(tok), output_filename=str(out), **case
                )
            )
            results.append({"options": case, "metadata_hex": zipfile.ZipFile(out).read("METADATA").hex()})
        (OUT / "metadata_cases.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        full = tmp / "full.task"
        bundler.create_bundle(
            bundler.BundleConfig(tflite_model=str(model), tokenizer_model=str(tok), output_filename=str(full), **FULL)
        )
        # Checked in under a name the repository's `*.task` ignore rule does not hide.
        (OUT / "full.task.bin").write_bytes(full.read_bytes())
    print(f"{len(results)} cases written to {OUT}")


if __name__ == "__main__":
    main()
