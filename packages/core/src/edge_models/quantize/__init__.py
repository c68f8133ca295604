"""Quantization: recipes (which scheme each weight gets), storage formats (the integers and scales written),
calibration (error-compensating rounding from activations) and the `auto` recipe. The converter uses it and
knows no algorithm."""

from edge_models.quantize.recipes import (
    COMPONENTS,
    DEFAULT_RECIPE,
    SCHEMES,
    Recipe,
    RecipeError,
    Scheme,
    all_schemes,
    parse_recipe,
)

__all__ = [
    "COMPONENTS",
    "DEFAULT_RECIPE",
    "SCHEMES",
    "Recipe",
    "RecipeError",
    "Scheme",
    "all_schemes",
    "parse_recipe",
]
