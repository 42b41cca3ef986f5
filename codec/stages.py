"""The stages a codec reports a hash of, in coding order: the one vocabulary the worker, the coordinator and
the reports share.

- `PARSE_STAGES` decide whether the decoder read the stream the encoder wrote: the hyper-latent, the scale
  index of every latent element and the coded symbols. A difference there is a desync.
- `LATENT_STAGES` are what the decoder rebuilt from the parse: the mean and y_hat. With a float mean (an
  imported float codec) they can drift while the parse holds.
- `RECON` is the decoded image.

A factorized codec (the lowcomplexity family, codec/lowcx.py) has no hyper-latent, scale index or mean: it
reports `FACTORIZED_STAGES` only, and `expected_stages` tells the two sets apart from the hashes a side sent.
"""

from codec.vocabulary import Stage

PARSE_STAGES = (Stage.Z_HAT, Stage.SCALE_INDEX, Stage.SYMBOLS)
LATENT_STAGES = (Stage.MEAN, Stage.Y_HAT)
RECON = Stage.RECON
STAGES = tuple(Stage)
HYPER_STAGES = (Stage.Z_HAT, Stage.SCALE_INDEX, Stage.MEAN)  # what only a hyperprior codec computes
FACTORIZED_STAGES = (Stage.SYMBOLS, Stage.Y_HAT, Stage.RECON)


def expected_stages(*reported: dict) -> tuple[Stage, ...]:
    """The stages two sides must both report: `FACTORIZED_STAGES` when neither reported a hyperprior
    stage, else all of them."""
    hyper = any(hashes.get(stage) for hashes in reported for stage in HYPER_STAGES)
    return STAGES if hyper else FACTORIZED_STAGES


def manifest_family(manifest: dict) -> str | None:
    """The manifest's `architecture.family`; None where it names none (a package from before families)."""
    architecture = manifest.get("architecture")
    family = architecture.get("family") if isinstance(architecture, dict) else None
    return family if isinstance(family, str) else None


def package_stages(manifest: dict) -> tuple[Stage, ...]:
    """The stages a package's codec reports, from its manifest: `FACTORIZED_STAGES` for the lowcomplexity
    family, every stage for the hyperprior."""
    return FACTORIZED_STAGES if manifest_family(manifest) == "lowcomplexity" else STAGES
