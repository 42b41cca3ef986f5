"""The stages a codec reports a hash of, in coding order: the one vocabulary the worker, the coordinator and
the reports share.

- `PARSE_STAGES` decide whether the decoder read the stream the encoder wrote: the hyper-latent, the scale
  index of every latent element and the coded symbols. A difference there is a desync.
- `LATENT_STAGES` are what the decoder rebuilt from the parse: the mean and y_hat. With a float mean (an
  imported float codec) they can drift while the parse holds.
- `RECON` is the decoded image.
"""

from codec.vocabulary import Stage

PARSE_STAGES = (Stage.Z_HAT, Stage.SCALE_INDEX, Stage.SYMBOLS)
LATENT_STAGES = (Stage.MEAN, Stage.Y_HAT)
RECON = Stage.RECON
STAGES = tuple(Stage)
