"""The converter: PyTorch decoder -> quantized .tflite with LiteRT-LM signatures."""

from edge_models.convert.converter import ConvertResult, convert
from edge_models.convert.export import ExportSettings
from edge_models.quantize import DEFAULT_RECIPE, Recipe, RecipeError, all_schemes, parse_recipe

__all__ = [
    "DEFAULT_RECIPE",
    "ConvertResult",
    "ExportSettings",
    "Recipe",
    "RecipeError",
    "all_schemes",
    "convert",
    "parse_recipe",
]
