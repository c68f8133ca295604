"""Recipes applied by ai-edge-quantizer to a float flatbuffer: the path for a plugin's scheme the low-memory writer
does not store (it holds several copies of the weights in memory)."""

from __future__ import annotations

from edge_models.quantize.recipes import COMPONENTS, Recipe, RecipeError, Scheme, all_schemes


def quantize_flatbuffer(model: bytes, recipe: Recipe) -> bytes:
    """Apply `recipe` to a float32 flatbuffer with ai-edge-quantizer."""
    if recipe.is_float32:
        return model
    if recipe.has_layer_parts:
        raise RecipeError(
            f"recipe {recipe.text!r}: parts of one block, rows.K and per-layer-input parts are stored by the "
            "low-memory writer only"
        )
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    qt = quantizer.Quantizer(bytearray(model))
    schemes = all_schemes()
    # Specific components are added after the default so that they override it.
    for component, name in recipe.parts:
        scheme = schemes[name]
        if scheme.bits == 32:
            # Float components still need an entry so they override a quantized default.
            if component != "default":
                qt.update_quantization_recipe(
                    regex=COMPONENTS[component],
                    operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                    op_config=qtyping.OpQuantizationConfig(
                        weight_tensor_config=qtyping.TensorQuantizationConfig(
                            num_bits=32, dtype=qtyping.TensorDataType.FLOAT
                        ),
                        compute_precision=qtyping.ComputePrecision.FLOAT,
                        explicit_dequantize=False,
                    ),
                    algorithm_key=AlgorithmName.NO_QUANTIZE,
                )
            continue
        qt.update_quantization_recipe(
            regex=COMPONENTS[component],
            operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
            op_config=_op_config(qtyping, scheme),
            algorithm_key=(AlgorithmName.FLOAT_CASTING if scheme.bits == 16 else AlgorithmName.MIN_MAX_UNIFORM_QUANT),
        )
    return bytes(qt.quantize().quantized_model)


def _op_config(qtyping, scheme: Scheme):
    if scheme.block_size not in (None, 32, 64, 128, 256):
        raise RecipeError(
            f"{scheme.description}: ai-edge-quantizer has no blocks of {scheme.block_size}; the low-memory "
            "converter (the default) writes them"
        )
    granularity = {
        None: qtyping.QuantGranularity.CHANNELWISE,
        32: qtyping.QuantGranularity.BLOCKWISE_32,
        64: qtyping.QuantGranularity.BLOCKWISE_64,
        128: qtyping.QuantGranularity.BLOCKWISE_128,
        256: qtyping.QuantGranularity.BLOCKWISE_256,
    }[scheme.block_size]
    if scheme.bits == 16:
        return qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
            compute_precision=qtyping.ComputePrecision.FLOAT,
            explicit_dequantize=True,
        )
    dynamic = scheme.mode == "dynamic"
    return qtyping.OpQuantizationConfig(
        weight_tensor_config=qtyping.TensorQuantizationConfig(
            num_bits=scheme.bits,
            symmetric=True,
            granularity=granularity,
            dtype=qtyping.TensorDataType.INT,
        ),
        compute_precision=qtyping.ComputePrecision.INTEGER if dynamic else qtyping.ComputePrecision.FLOAT,
        explicit_dequantize=not dynamic,
    )
