"""Gemma 4's text decoder against transformers: per-layer inputs, KV sharing, wider global heads, proportional RoPE,
the multimodal checkpoint layout, and the settings refused by name."""

from __future__ import annotations

import pytest
import torch

from edge_models import registry
from edge_models.hf.config import UnsupportedConfigError, read_config
from edge_models.kinds.decoder import load_for_spec, resolve_spec
from edge_models.kinds.decoder_verify import compare
from edge_models.testing import build_reference, save_reference
from edge_models_gemma.gemma4 import TINY_GEMMA4, gemma4_config_from_hf


def _reference(overrides: dict | None = None, seed: int = 0):
    ref = build_reference({**TINY_GEMMA4, **(overrides or {})}, "Gemma4ForCausalLM", seed)
    # transformers keeps the layer scalar as a buffer, which build_reference leaves at 1: give each layer its own, so
    # that a scalar read from the wrong place (or not at all) shows in the logits.
    with torch.no_grad():
        for i, layer in enumerate(ref.model.layers):
            layer.layer_scalar.fill_(0.6 + 0.2 * i)
    return ref


def _ours_and_ref(tmp_path, overrides=None):
    spec = registry().get("gemma4")
    ref = _reference(overrides)
    ckpt = save_reference(ref, tmp_path / "ckpt")
    return load_for_spec(spec, ckpt, spec.config_from_hf(read_config(ckpt))), ref


def test_tiny_config_has_every_gemma4_part():
    cfg = gemma4_config_from_hf(TINY_GEMMA4)
    assert {cfg.layer_type(i) for i in range(cfg.num_layers)} == {"sliding", "global"}
    assert cfg.kv_shared_layers == 2 and [cfg.kv_source(i) for i in range(5)] == [0, 1, 2, 2, 1]
    assert cfg.attention_for(1).head_dim == 64 and cfg.attention_for(0).head_dim == 32
    assert cfg.per_layer_embedding is not None and cfg.kv_shared_mlp_multiplier == 2
    assert cfg.rope.scaling == {"rope_type": "proportional", "partial_rotary_factor": 0.25}


def test_cache_holds_only_the_layers_that_write_one():
    from edge_models.layers import Decoder

    with torch.device("meta"):
        model = Decoder(gemma4_config_from_hf(TINY_GEMMA4))
    shapes = {name: tuple(t.shape) for name, t in model.empty_cache(16).items()}
    # Layers 3 and 4 read layers 2 and 1: three producers, each in its own layer's shape (global heads are wider).
    assert shapes == {
        "k_0": (1, 1, 16, 32),
        "v_0": (1, 1, 32, 16),
        "k_1": (1, 1, 16, 64),
        "v_1": (1, 1, 64, 16),
        "k_2": (1, 1, 16, 32),
        "v_2": (1, 1, 32, 16),
    }
    # The sharing layers hold no key/value weights either.
    assert not hasattr(model.layers[3].attn, "k_proj") and hasattr(model.layers[2].attn, "k_proj")


def test_proportional_rope_matches_transformers():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from edge_models.layers.rope import inverse_frequencies

    ref = build_reference(TINY_GEMMA4, "Gemma4ForCausalLM")
    theirs, _ = ROPE_INIT_FUNCTIONS["proportional"](ref.config, "cpu", layer_type="full_attention")
    ours = inverse_frequencies(64, 1_000_000.0, {"rope_type": "proportional", "partial_rotary_factor": 0.25})
    assert torch.equal(ours, theirs.float())
    assert int((ours > 0).sum()) == 8  # a quarter of 32 pairs turn


@pytest.mark.slow
def test_prefill_and_32_greedy_tokens_match_transformers(tmp_path):
    ours, ref = _ours_and_ref(tmp_path)
    ids = torch.randint(0, 256, (12,), generator=torch.Generator().manual_seed(1)).tolist()
    result = compare(ours, ref, ids, 32, atol=1e-4)
    assert result.max_abs_diff <= 1e-4, result
    assert result.greedy_match == result.greedy_total == 32, result


@pytest.mark.slow
def test_keys_as_values_with_their_own_kv_heads_match_transformers(tmp_path):
    """attention_k_eq_v: global layers take values from the key projection, with num_global_key_value_heads."""
    ours, ref = _ours_and_ref(tmp_path, {"attention_k_eq_v": True, "num_global_key_value_heads": 2})
    assert ours.config.attention_for(1).k_eq_v and ours.config.attention_for(1).num_kv_heads == 2
    assert not hasattr(ours.layers[1].attn, "v_proj")
    ids = torch.randint(0, 256, (12,), generator=torch.Generator().manual_seed(1)).tolist()
    result = compare(ours, ref, ids, 32)  # tolerance 1e-4 of the largest logit
    assert result.passed, result


@pytest.mark.slow
@pytest.mark.parametrize(
    "field,value",
    [("layer_scalar", None), ("per_layer_embedding", None), ("kv_shared_mlp_multiplier", 1)],
)
def test_each_gemma4_part_matters(field, value, tmp_path):
    """Leaving out one part of the decoder moves the logits: the comparison above cannot pass by accident."""
    from edge_models.loader import load_model
    from edge_models_gemma.gemma4 import GEMMA4_NAMES

    ours, ref = _ours_and_ref(tmp_path)
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref(ids).logits
    if field == "kv_shared_mlp_multiplier":
        # A narrower MLP cannot load the checkpoint: the loader names the misshapen tensors.
        with pytest.raises(Exception, match="shape mismatch"):
            load_model(ours.config.replace(**{field: value}), tmp_path / "ckpt", GEMMA4_NAMES)
        return
    changed = ours.config.replace(**{field: value})
    from edge_models.layers import Decoder

    other = Decoder(changed)
    other.load_state_dict({k: v for k, v in ours.state_dict().items() if k in other.state_dict()}, strict=False)
    with torch.no_grad():
        logits, _ = other.eval()(ids, torch.arange(12), other.empty_cache(16))
    assert float((logits - expected).abs().max()) > 1e-2


def test_unsupported_settings_are_named_in_one_error():
    bad = {
        **TINY_GEMMA4,
        "enable_moe_block": True,
        "num_experts": 128,
        "attention_bias": True,
        "use_bidirectional_attention": "vision",
        "hidden_activation": "relu",
    }
    with pytest.raises(UnsupportedConfigError) as info:
        gemma4_config_from_hf(bad)
    message = str(info.value)
    assert "4 unsupported setting(s)" in message
    for culprit in ("mixture-of-experts", "26B-A4B", "attention_bias", "use_bidirectional_attention", "relu"):
        assert culprit in message


@pytest.mark.slow
def test_text_decoder_of_a_multimodal_checkpoint(tmp_path, capsys, run):
    """A Gemma4ForConditionalGeneration checkpoint: `auto` finds Gemma 4, the text decoder loads, the vision and
    audio towers are left out with a message naming them, and the logits are transformers' on text input."""
    import transformers

    text = {k: v for k, v in TINY_GEMMA4.items() if k not in ("architectures", "model_type")}
    config = transformers.Gemma4Config(
        text_config=text,
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, head_dim=16
        ),
        audio_config=dict(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            output_proj_dims=32,
            subsampling_conv_channels=[8, 4],
        ),
    )
    torch.manual_seed(0)
    ref = transformers.Gemma4ForConditionalGeneration(config).eval()
    ref.save_pretrained(tmp_path / "mm")
    spec = resolve_spec("auto", tmp_path / "mm")
    assert spec.family == "gemma4"
    ours = load_for_spec(spec, tmp_path / "mm")
    said = capsys.readouterr().err
    assert "reading the text decoder" in said and "model.vision_tower" in said and "model.audio_tower" in said
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, _ = ours(ids, torch.arange(12), ours.empty_cache(16))
        expected = ref(input_ids=ids).logits
    assert float((logits - expected).abs().max()) <= 1e-4
    # `verify` compares with the checkpoint's own class (a text-only class would not find the decoder's weights).
    result = run("verify", "auto", "--checkpoint", tmp_path / "mm")
    assert result.exit_code == 0 and "PASSED" in result.output, result.output


def test_calibration_runs_blocks_as_the_model_does(tmp_path):
    """GPTQ calibrates block by block: with per-layer inputs and KV sharing, running the blocks one after another
    through the calibration runner gives the model's own hidden states."""
    from edge_models.kinds.decoder import random_model
    from edge_models.quantize.calibrate import _BlockRunner

    model = random_model(gemma4_config_from_hf(TINY_GEMMA4), seed=2)
    ids = torch.randint(0, 256, (12,), generator=torch.Generator().manual_seed(3)).tolist()
    x = model.embed_tokens(torch.tensor([ids])) * torch.tensor(model.embedding_scale)
    run_block = _BlockRunner(model, [ids], [x], None)
    with torch.no_grad():
        for i, block in enumerate(model.layers):
            x = run_block(block, i, 0, x)
        expected, _ = model.hidden_states(torch.tensor([ids]), torch.arange(12), model.empty_cache(12))
    assert torch.allclose(model.final_norm(x), expected, atol=1e-5)


def test_recipe_parts_for_the_per_layer_inputs():
    from edge_models.kinds.decoder import random_model
    from edge_models.quantize.recipes import RecipeError, parse_recipe

    recipe = parse_recipe("layers.1.attention=int8,per_layer_table=int4-block32,int8,per_layer_projections=fp16")
    assert [c for c, _ in recipe.parts] == ["default", "per_layer_table", "per_layer_projections", "layers.1.attention"]
    assert recipe.has_layer_parts
    schemes = {
        "per_layer_embedding.table.weight": "int4-block32",
        "per_layer_embedding.model_projection.weight": "fp16",
        "layers.3.per_layer_gate.gate.weight": "fp16",
        "layers.3.per_layer_gate.projection.weight": "fp16",
        "layers.3.mlp.up_proj.weight": "int8",
        "embed_tokens.weight": "int8",
    }
    assert {p: recipe.scheme_name_for(p) for p in schemes} == schemes
    recipe.check_model(random_model(gemma4_config_from_hf(TINY_GEMMA4)))
    with pytest.raises(RecipeError, match="no per-layer inputs"):
        recipe.check_model(random_model(registry().get("llama").tiny_config))


@pytest.mark.slow
def test_auto_plans_the_per_layer_inputs_as_parts_of_their_own():
    """auto sizes and chooses the per-layer table (a lookup, rounded per row) and the projections that mix it in as
    units of their own; a size target that only fits with the table at int4 takes it there (the writer stores what
    the recipe's scheme for it says: the int4 lookup is checked above)."""
    from edge_models.quantize.auto import HIGH, LOW, Target, choose_recipe, units_of
    from edge_models.quantize.recipes import parse_recipe
    from helpers.trained import markov_text, trained_tiny_model

    config = gemma4_config_from_hf(TINY_GEMMA4)
    model = trained_tiny_model(config, steps=60)
    units = {u.part: u for u in units_of(model)}
    table = units["per_layer_table"]
    assert table.params == ["per_layer_embedding.table.weight"] and set(table.sizes) == {HIGH, LOW}
    assert len(units["per_layer_projections"].params) == 1 + 2 * config.num_layers
    assert "embedding,lm_head" in units and units["embedding,lm_head"].params == ["embed_tokens.weight"]
    windows = [markov_text(48, config.vocab_size, seed=1000 + k) for k in range(3)]
    # Every part at its smallest, plus less than the table's int8 -> int4 saving: reachable only with the table at
    # int4 (what is left over goes back to the costliest parts).
    budget = sum(min(u.sizes.values()) for u in units.values()) + (table.sizes[HIGH] - table.sizes[LOW]) // 2
    plan = choose_recipe(model, windows, Target(max_size=budget))
    chosen = {u.part: u for u in plan.units}
    assert plan.weights_bytes <= budget and chosen["per_layer_table"].choice == LOW
    assert set(chosen["per_layer_table"].costs) == {LOW} and plan.measured_increase is not None
    recipe = parse_recipe(plan.recipe)
    assert recipe.scheme_name_for("per_layer_embedding.table.weight") == LOW


# --- conversion -------------------------------------------------------------------------------------------------


def _table_uses(path) -> dict[tuple[str, str], int]:
    """(op, tensor type) -> count, over every subgraph, of the ops reading the per-layer table."""
    from collections import Counter

    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    uses: Counter = Counter()
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for k in range(graph.OperatorsLength()):
            op = graph.Operators(k)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = ops[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
            for j in range(op.InputsLength()):
                index = op.Inputs(j)
                if index >= 0 and b"per_layer_embedding__table" in graph.Tensors(index).Name():
                    uses[(name, types[graph.Tensors(index).Type()])] += 1
    return dict(uses)


@pytest.mark.slow
@pytest.mark.parametrize("recipe,storage", [("int8-gptq", "INT8"), ("int4-block32", "INT4")])
def test_quantized_file_gathers_the_per_layer_table_and_caches_producers_only(recipe, storage, tmp_path):
    """The per-layer table is stored quantized and only ever indexed (one EMBEDDING_LOOKUP per signature, never a
    FULLY_CONNECTED); the file has KV inputs for the three layers that write a cache, not the two that share; the
    verify and shortlist signatures convert too, and GPTQ calibrates through the shared caches."""
    from edge_models.convert import ExportSettings, convert
    from edge_models.runtime import LiteRTModel

    ours, _ = _ours_and_ref(tmp_path)
    settings = ExportSettings((8,), 32, decode_windows=(), prefill_windows=(), verify_lengths=(4,), shortlist=8)
    windows = [torch.randint(0, 256, (16,), generator=torch.Generator().manual_seed(s)).tolist() for s in range(2)]
    path = convert(ours, tmp_path / f"g4-{recipe}.tflite", settings, recipe, progress=None, calibration=windows).path
    signatures = settings.signature_names()
    assert _table_uses(path) == {("EMBEDDING_LOOKUP", storage): len(signatures)}
    lite = LiteRTModel(path)
    assert sorted(lite._cache_spec) == [f"kv_cache_{kv}_{i}" for kv in "kv" for i in range(3)]
    assert lite.decode(5, 0).shape == (256,)
    # bench reads the file's shape as the model's (3 cache layers are the 5-layer model's producers) and counts the
    # per-layer table in the parameters but not in the bytes decode reads per token (one row of it is looked up).
    from edge_models.tflite.reading import decode_weight_bytes, model_shape

    shape = model_shape(path.read_bytes())
    assert shape.differences(ours.config) == []
    assert shape.parameters >= ours.per_layer_embedding.table.weight.numel()
    table_bytes = ours.per_layer_embedding.table.weight.numel() * (1 if storage == "INT8" else 0.5)
    assert decode_weight_bytes(path.read_bytes()) < path.stat().st_size - table_bytes


@pytest.mark.slow
def test_litertlm_bundle_has_the_gemma4_type_and_runs_in_litert_lm(tmp_path):
    """The tiny model as a .litertlm with LiteRT-LM's Gemma4 model type: LiteRT-LM 0.18.1 loads it and its greedy
    text equals our runtime's."""
    litert_lm = pytest.importorskip("litert_lm")
    from edge_models.convert import ExportSettings, convert
    from edge_models.runtime import Generator
    from edge_models.testing import train_sentencepiece
    from edge_models_bundler import write_bundle
    from edge_models_bundler.options import resolve_options

    ours, _ = _ours_and_ref(tmp_path)
    tflite = convert(ours, tmp_path / "m.tflite", ExportSettings((8,), 64), "int8", progress=None).path
    tokenizer = train_sentencepiece(tmp_path / "tok.model")
    options = resolve_options("gemma4", start_token="<s>", stop_tokens=("</s>",))
    assert options.litertlm_model_type == "gemma4"
    bundle = tmp_path / "m.litertlm"
    write_bundle(bundle, tflite, tokenizer, options)

    from litert_lm_builder.runtime.proto import llm_metadata_pb2

    from edge_models_bundler.litertlm import _metadata

    meta = llm_metadata_pb2.LlmMetadata.FromString(_metadata(options, _sp(tokenizer), 64))
    assert meta.llm_model_type.WhichOneof("model_type") == "gemma4"

    gen = Generator.open(bundle)
    ids = gen.encode("kalo mine ruta")
    expected = gen.tokenizer.decode(list(gen.generate_ids(ids, 16, speculate=False)))
    engine = litert_lm.Engine(str(bundle))
    try:
        session = engine.create_session(
            apply_prompt_template=False, sampler_config=litert_lm.SamplerConfig(top_k=1), max_output_tokens=16
        )
        session.run_prefill(["kalo mine ruta"])
        text = session.run_decode().texts[0]
        session.close()
    finally:
        engine.close()
    assert text == expected and text


def _sp(path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    sp.Load(str(path))
    return sp
