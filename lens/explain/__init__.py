"""How a model's decision is explained and checked: the one registry of explanation methods, captum
attributions, faithfulness scoring with a model, sink keys. May import: mvt, viz, lens.core."""
