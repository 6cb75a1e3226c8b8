"""What each weights source says about its licence, and the terms of the data it was trained on, in a few words
for the model's label (:attr:`mvt.WeightsSource.licence`); the README's "Licences" section has the links.

"unstated" means the source says nothing we could find: torchvision's README only warns that pre-trained models
"may have their own licenses or terms and conditions derived from the dataset used for training"; PySlowFast,
whose MViT weights torchvision ported, licenses its code (Apache-2.0), not its model zoo; no Kinetics-400 page
we could read states terms for the annotations, and the videos are YouTube uploads under their owners' terms.
"""

TORCHVISION_K400 = "licence unstated (torchvision); Kinetics-400 terms unstated"
VIVIT_HUB = "MIT licence (hub card); Kinetics-400 terms unstated"
HVT_RELEASE = "Apache-2.0 (HVT repo); ImageNet terms: non-commercial research"
SYNTHMOTION = "Apache-2.0 (this project); SynthMotion, generated here"
PYSLOWFAST = {
    "kinetics400": "licence unstated (PySlowFast model zoo); Kinetics-400 terms unstated",
    "kinetics600": "licence unstated (PySlowFast model zoo); Kinetics-600 terms unstated",
    "ssv2": "licence unstated (PySlowFast model zoo); Something-Something v2 terms not checked here",
}
"""The MViT papers' own releases (:mod:`mvt.checkpoints.public`), by the label set they were trained on."""
