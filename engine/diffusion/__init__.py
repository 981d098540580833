"""Diffusion core: schedules, samplers over a denoiser, model wrappers and guidance."""

from .denoisers import blend_denoiser, blend_model, projected, projected_blend, v_denoiser
from .guidance import classifier_free_guidance, nested_guidance
from .samplers import SAMPLERS, invert_iadb, sample_ddim, sample_dpmpp_2m, sample_euler_ancestral, sample_iadb
from .schedules import alphas_uniform, sigmas_cosine, sigmas_karras

__all__ = [
    "SAMPLERS", "alphas_uniform", "blend_denoiser", "blend_model", "classifier_free_guidance", "nested_guidance",
    "invert_iadb", "projected", "projected_blend", "sample_ddim", "sample_dpmpp_2m", "sample_euler_ancestral",
    "sample_iadb", "sigmas_cosine", "sigmas_karras", "v_denoiser",
]
