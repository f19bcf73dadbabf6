"""Default keyword lists and frequency corpus for NEU-DET's six classes. Light: plain data.

The keywords are the visual vocabulary the seed's captioner used (generic
"paper" keywords of the surface-defect literature plus a short list per
class); the corpus is a handful of class descriptions in which keyword
frequencies are counted. All three are options of the ``keywords`` and
``clip_rerank`` providers, so a user with other classes replaces them in a recipe.
"""

from __future__ import annotations

#: generic keywords of the steel surface-defect literature, in the seed's order
PAPER_KEYWORDS: tuple[str, ...] = (
    "hot-rolled steel strip",
    "steel surface",
    "surface defect",
    "grayscale",
    "industrial inspection",
    "macro photography",
    "high detail",
)

#: per-class keywords for NEU-DET (Song & Yan, 2013), plus normal ("good") images
CLASS_KEYWORDS: dict[str, tuple[str, ...]] = {
    "crazing": ("fine cracks", "network of cracks", "crazed texture", "dry mud pattern", "shallow fissures"),
    "inclusion": ("dark inclusions", "embedded particles", "elongated spots", "non-metallic inclusion", "dark streaks"),
    "patches": ("dark patches", "irregular blotches", "uneven shading", "large stains", "mottled regions"),
    "pitted_surface": ("pits", "small holes", "corrosion pits", "pockmarked surface", "dotted cavities"),
    "rolled-in_scale": ("rolled-in scale", "oxide scale", "flaky fragments", "pressed-in scale", "rough speckles"),
    "scratches": ("scratches", "long thin lines", "linear grooves", "abrasion marks", "parallel scratches"),
    "good": ("defect-free surface", "uniform texture", "clean steel"),
}

#: descriptions in which keyword occurrences are counted (the frequency ranking's corpus)
CORPUS: tuple[str, ...] = (
    "Crazing shows fine cracks on the steel surface: a network of cracks and shallow fissures, "
    "a crazed texture like a dry mud pattern; fine cracks dominate the hot-rolled steel strip.",
    "Inclusion defects are dark inclusions and embedded particles in the steel surface, elongated spots "
    "and dark streaks left by a non-metallic inclusion; dark inclusions appear in grayscale images.",
    "Patches are dark patches and irregular blotches with uneven shading; dark patches and large stains "
    "make mottled regions on the surface defect image.",
    "A pitted surface has pits and small holes, corrosion pits on the steel surface; pits give a "
    "pockmarked surface of dotted cavities.",
    "Rolled-in scale is oxide scale pressed into the strip during rolling: rolled-in scale leaves flaky "
    "fragments, pressed-in scale and rough speckles on the hot-rolled steel strip.",
    "Scratches are long thin lines and linear grooves; scratches and abrasion marks, often parallel "
    "scratches, run along the rolling direction of the steel surface.",
    "Industrial inspection images of the steel surface are grayscale, taken as macro photography with high "
    "detail; a surface defect is judged against a defect-free surface with a uniform texture of clean steel.",
)
