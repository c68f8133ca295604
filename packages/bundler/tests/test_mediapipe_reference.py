"""Byte-equality with MediaPipe's own bundler (mediapipe==0.10.35, `mediapipe.tasks.python.genai.bundler`).

Two layers:
- always: checked-in outputs of the reference (tests/data/mediapipe-0.10.35, made by
  tests/data/make_reference.py): the METADATA bytes for 81 option combinations, and a whole
  `.task` whose entries we re-bundle and compare byte for byte;
- where the reference is installed (it needs jax, torch and sentencepiece, so it lives in its own
  environment: set EDGE_MODELS_MEDIAPIPE_PYTHON, default /work/venv-mp/bin/python): a live run on
  the tiny converted model, compared byte for byte with our bundle.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from edge_models.formats.task import encode_llm_params, read_task
from edge_models.spec import PromptTemplate

from edge_models_bundler import BundleOptions, write_task
from edge_models_bundler.zipwriter import Source, write_aligned_zip

DATA = Path(__file__).parent / "data" / "mediapipe-0.10.35"
_TEMPLATE = {
    "prompt_prefix_user": "user_prefix",
    "prompt_suffix_user": "user_suffix",
    "prompt_prefix_model": "model_prefix",
    "prompt_suffix_model": "model_suffix",
    "prompt_prefix_system": "system_prefix",
    "prompt_suffix_system": "system_suffix",
}


def options_from_reference(cfg: dict) -> BundleOptions:
    """Our options for the keyword arguments of MediaPipe's BundleConfig."""
    cfg = dict(cfg)
    template = PromptTemplate(**{field: cfg.pop(key) for key, field in _TEMPLATE.items() if key in cfg})
    return BundleOptions(
        start_token=cfg.pop("start_token"),
        stop_tokens=tuple(cfg.pop("stop_tokens")),
        template=template,
        system_prompt=cfg.pop("system_prompt", "") or "",
        bytes_to_unicode=cfg.pop("enable_bytes_to_unicode_mapping", False),
        **cfg,  # role tokens
    )


CASES = json.loads((DATA / "metadata_cases.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(sorted(c["options"])))
def test_metadata_bytes_equal_the_reference(case):
    assert encode_llm_params(options_from_reference(case["options"]).to_llm_params()).hex() == case["metadata_hex"]


def test_whole_bundle_equals_the_reference(tmp_path):
    ref = (DATA / "full.task.bin").read_bytes()
    ref_path = tmp_path / "ref.task"
    ref_path.write_bytes(ref)
    with zipfile.ZipFile(ref_path) as zf:
        infos = zf.infolist()
        entries = {i.filename: zf.read(i) for i in infos}
    date_time = infos[0].date_time  # the reference stamps the current time; reuse it
    # The zip layer alone ...
    out = tmp_path / "ours_zip.task"
    with open(out, "wb") as f:
        write_aligned_zip(f, [Source(name, data) for name, data in entries.items()], date_time)
    assert out.read_bytes() == ref
    # ... and the whole path from options (the stand-in model is not a .tflite: no validation).
    (tmp_path / "m.tflite").write_bytes(entries["TF_LITE_PREFILL_DECODE"])
    (tmp_path / "t.model").write_bytes(entries["TOKENIZER_MODEL"])
    options = options_from_reference(next(c["options"] for c in CASES if c["options"].get("user_role_token")))
    ours = tmp_path / "ours.task"
    write_task(ours, tmp_path / "m.tflite", tmp_path / "t.model", options, date_time=date_time, validate=False)
    assert ours.read_bytes() == ref
    assert read_task(ours).params == read_task(ref_path).params


def _reference_python() -> str | None:
    python = os.environ.get("EDGE_MODELS_MEDIAPIPE_PYTHON", "/work/venv-mp/bin/python")
    if not Path(python).is_file():
        return None
    probe = subprocess.run(
        [python, "-c", "from mediapipe.tasks.python.genai import bundler"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    return python if probe.returncode == 0 else None


LIVE_SCRIPT = """
import json, sys
from mediapipe.tasks.python.genai import bundler
cfg = json.loads(sys.argv[4])
bundler.create_bundle(bundler.BundleConfig(tflite_model=sys.argv[1], tokenizer_model=sys.argv[2],
                                           output_filename=sys.argv[3], **cfg))
"""


def test_live_reference_on_the_converted_model(tmp_path, tiny_tflite, tokenizer):
    python = _reference_python()
    if python is None:
        pytest.skip(
            "mediapipe==0.10.35's bundler is not installed (it needs jax, torch and sentencepiece in a "
            "separate environment: set EDGE_MODELS_MEDIAPIPE_PYTHON); the checked-in references above apply"
        )
    cfg = {
        "start_token": "<s>",
        "stop_tokens": ["</s>", "<end_of_turn>"],
        "system_prompt": "Be brief.",
        "prompt_prefix_user": "<start_of_turn>user\n",
        "prompt_suffix_user": "<end_of_turn>\n",
        "prompt_prefix_model": "<start_of_turn>model\n",
        "prompt_suffix_model": "<end_of_turn>\n",
    }
    ref = tmp_path / "ref.task"
    subprocess.run(
        [python, "-c", LIVE_SCRIPT, str(tiny_tflite), str(tokenizer), str(ref), json.dumps(cfg)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    with zipfile.ZipFile(ref) as zf:
        date_time = zf.infolist()[0].date_time
    ours = tmp_path / "ours.task"
    write_task(ours, tiny_tflite, tokenizer, options_from_reference(cfg), date_time=date_time)
    assert ours.read_bytes() == ref.read_bytes()
