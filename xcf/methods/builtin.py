"""The methods xcf ships, registered by xcf itself through :func:`xcf_register_methods` (a third
party registers its own the same way, from its own plugin).

Each is the seed's latent optimization with other parts, except ``latent-shift``. The numbers
behind each choice are on the docs' results page (``python benchmarks/report.py``).
"""

from __future__ import annotations

from ..hookspecs import hookimpl
from .method import LatentShift, LocalExemplar, LocalFill, Method
from .parts import Blend, Execution, Fill, Objective, Region, StopRule, Views

__all__ = ["SEED", "EARLY_STOP", "FAST", "LOCAL", "LOCAL_IN_MASK", "LOCAL_ROBUST", "LOCAL_FILL",
           "LOCAL_FILL_IN_MASK", "LOCAL_EXEMPLAR", "LATENT_SHIFT", "BUILTIN"]

_LEVELS = (0.5, 0.35, 0.2, 0.1)
_RESIDUAL = Blend("residual", feather=2.0)

#: The seed's method exactly: Adam on the latent, lr 0.1, 200 steps, no early stop, Grad-CAM++
#: mask > 0.5, change outside it weighted 1e5, classification weight 1e3.
SEED = Method(
    "seed", "the seed's method exactly: Grad-CAM++ mask > 0.5, masked L2 (outside x1e5), Adam lr 0.1, "
            "200 steps, no early stop",
    reference="Local Counterfactuals for Chest X-Ray Images using Saliency Map Guidance, "
              "github.com/florianjuengermann/local-counterfactuals (docs: The method)")

#: The seed's method, stopped as soon as the target probability is below 0.5.
EARLY_STOP = SEED.replace(
    name="early-stop", description="the seed's method, stopped once the target probability is below 0.5",
    stop=StopRule(0.5))

#: The fastest setting measured that is as valid as the seed's method in the seed's own mask.
FAST = Method(
    "fast", "Grad-CAM++ regions grown 0.5 -> 0.1, the input plus the decoder's change inside the "
            "region (residual blend, 2 px feather), lr 1 growing 1.5x per level, 20 steps per "
            "level but the last, each level continuing from the last, stop at p < 0.5; loop on "
            "folded, channels-last copies, bf16 where it pays",
    region=Region("gradcam++", _LEVELS, level_steps=20, warm_start=True, lr_growth=1.5),
    blend=_RESIDUAL, stop=StopRule(0.5), lr=1.0,
    execution=Execution(fold_batchnorm=True, channels_last=True, autocast_bf16="auto"))

#: The change on the finding: regions from the smoothed input gradient.
LOCAL = Method(
    "local", "regions from the smoothed input gradient, grown 0.5 -> 0.1 for films not flipped, "
             "residual blend, lr 1, stop at p < 0.5, the seed's loss with a stable gradient; films "
             "not flipped are searched again in Grad-CAM++'s regions",
    objective=Objective(stable=True),
    region=Region("saliency", _LEVELS, fallback="gradcam++"),
    blend=_RESIDUAL, stop=StopRule(0.5), lr=1.0)

#: The default: ``local`` with every region inside the seed's mask, stopping only once the other
#: findings are back near their start.
LOCAL_IN_MASK = LOCAL.replace(
    name="local-in-mask",
    description="'local' with its gradient regions inside the seed's Grad-CAM++ mask (eroded 4 px), "
                "stopping only once the other findings are within 0.1 of their start (the default)",
    region=Region("saliency-in-gradcam++", _LEVELS, fallback="gradcam++"),
    stop=StopRule(0.5, off_target=0.1))

#: The default's regions, with a flip that must survive small blurs, shifts and noise.
LOCAL_ROBUST = LOCAL_IN_MASK.replace(
    name="local-robust",
    description="'local-in-mask' whose classification term is averaged over 4 views of the "
                "counterfactual per step (blur up to 1.5 px, shift up to 3 px, noise 0.02), stopping "
                "only once every view is below 0.5 too: a flip that a texture cannot fake",
    objective=Objective(stable=True, views=Views(n=4)),
    stop=StopRule(0.5, off_target=0.1, on_views=True),
    reference="expectation over transformations: Athalye et al., Synthesizing Robust Adversarial "
              "Examples, ICML 2018")

#: The regions, stop rule and soft edge of both fill methods: the default's regions, then
#: Grad-CAM++'s, grown 4 px; the smallest whose fill takes p below 0.05 with the other findings
#: within 0.1 of their start.
_FILL_PARTS = {"region": Region("saliency-in-gradcam++", _LEVELS, fallback="gradcam++"),
               "stop": StopRule(0.05, off_target=0.1), "fill": Fill(dilate=4, feather=2.0)}

#: The default's regions, filled with healthy anatomy by the pack's inpainter.
LOCAL_FILL = LocalFill(
    "local-fill",
    "the default's regions (levels 0.5 -> 0.1, then Grad-CAM++'s), grown 4 px and filled by the "
    "pack's inpainter (trained on films without findings) with what the film would show there; "
    "the smallest region whose fill takes p below 0.05 with the other findings within 0.1 of "
    "their start; a film no fill flips is searched from the fill of the largest region (Adam on the "
    "inpainter's latent, lr 0.2, up to 100 steps), and one whose fill flips but raises another "
    "finding too far is searched from its fill, kept only where the search meets the rule",
    **_FILL_PARTS, steps=100, lr=0.2, repair=True,
    reference="generative infilling: Chang et al., Explaining Image Classifiers by Counterfactual "
              "Generation, ICLR 2019; RadEdit, Pérez-García et al., ECCV 2024")

#: The default: local-fill with every change inside the seed's mask.
LOCAL_FILL_IN_MASK = LOCAL_FILL.replace(
    name="local-fill-in-mask",
    description="'local-fill' kept inside the seed's Grad-CAM++ mask (the default): the gradient "
                "regions inside the mask (eroded 4 px; levels 0.5 -> 0.1), not grown, 2 px soft "
                "edge, filled by the pack's inpainter; no region outside the mask; a film no fill "
                "flips is searched in the inpainter's latent from the fill of the largest region",
    region=Region("saliency-in-gradcam++", _LEVELS), fill=Fill(dilate=0, feather=2.0))

#: The default's regions, filled from real films without the finding.
LOCAL_EXEMPLAR = LocalExemplar(
    "local-exemplar",
    "local-fill's regions (levels 0.5 -> 0.1, then Grad-CAM++'s, grown 4 px, 2 px feather) filled "
    "with the same region of the closest of the pack's real films without the finding (its "
    "exemplar bank: films compared on what the region leaves of them, grey levels matched around "
    "it), trying the 8 closest per level; the smallest region whose fill takes p below 0.05 with "
    "the other findings within 0.1 of their start; no search",
    **_FILL_PARTS, steps=0, repair=False, donors=8,
    reference="scene completion from an image collection: Hays & Efros, SIGGRAPH 2007; mask-confined "
              "edits of chest X-rays: RadEdit, Pérez-García et al., ECCV 2024")

#: The Latent Shift baseline.
LATENT_SHIFT = LatentShift(
    "latent-shift", "baseline, Latent Shift: one gradient of p(target) in the latent, a line "
                    "search along it, no region",
    detail_gate=False,
    reference="Cohen et al., Gifsplanation via Latent Shift, MIDL 2021")

#: Every shipped method, in table order.
BUILTIN: tuple[Method, ...] = (SEED, EARLY_STOP, FAST, LOCAL, LOCAL_IN_MASK, LOCAL_ROBUST, LOCAL_FILL,
                               LOCAL_FILL_IN_MASK, LOCAL_EXEMPLAR, LATENT_SHIFT)


@hookimpl
def xcf_register_methods(register) -> None:
    """Register the shipped methods."""
    for m in BUILTIN:
        register(m.name, lambda m=m: m, description=m.description)
