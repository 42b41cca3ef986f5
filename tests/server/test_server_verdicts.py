"""Cell verdicts, nondeterminism flags and first-mismatch forensics, as pure functions."""

import base64

import numpy as np
import pytest

from codec.stages import FACTORIZED_STAGES, package_stages
from server import verdicts
from server.forensics import IndexMapError, decode_array, first_mismatch
from server.verdicts import Outcome, decide

HASHES = dict(zip(("z_hat", "scale_index", "symbols", "mean", "y_hat", "recon"), ("abc9de"), strict=True))
HASHES = {stage: letter * 64 for stage, letter in HASHES.items()}


def done(**changes) -> Outcome:
    return Outcome("done", {**HASHES, **changes})


def test_identical_hashes_are_bit_exact():
    assert decide(done(), done()).verdict == verdicts.BIT_EXACT


def test_same_latents_different_reconstruction_is_latent_exact():
    result = decide(done(), done(recon="f" * 64))
    assert (result.verdict, result.first_stage) == (verdicts.LATENT_EXACT, "recon")


@pytest.mark.parametrize("stage", ["z_hat", "scale_index", "symbols"])
def test_the_first_differing_parse_stage_is_a_desync(stage):
    result = decide(done(), done(**{stage: "0" * 64, "y_hat": "2" * 64, "recon": "1" * 64}))
    assert (result.verdict, result.first_stage) == (verdicts.DESYNC, stage)


def test_stages_are_compared_in_coding_order():
    result = decide(done(), done(scale_index="0" * 64, symbols="0" * 64, mean="0" * 64, y_hat="0" * 64))
    assert result.first_stage == "scale_index"


@pytest.mark.parametrize(("differing", "first"), [(("mean", "y_hat"), "mean"), (("y_hat",), "y_hat")])
def test_a_drifting_y_hat_over_an_intact_parse_is_symbol_exact(differing, first):
    result = decide(done(), done(**dict.fromkeys((*differing, "recon"), "0" * 64)))
    assert (result.verdict, result.first_stage) == (verdicts.SYMBOL_EXACT, first)
    assert verdicts.SYMBOL_EXACT in verdicts.PASSING


def test_a_fixed_point_mean_that_rounded_the_other_way_is_a_desync():
    """Our float twin rounds its mean to 2^-8: a differing y_hat over an intact parse is a silent failure."""
    result = decide(done(), done(mean="0" * 64, y_hat="0" * 64, recon="0" * 64), float_mean=False)
    assert (result.verdict, result.first_stage) == (verdicts.DESYNC, "mean")
    assert "rounded the other way" in result.detail


def test_a_drifting_mean_that_leaves_y_hat_alone_is_not_symbol_exact():
    assert decide(done(), done(mean="0" * 64)).verdict == verdicts.BIT_EXACT


def test_a_decode_refused_in_the_entropy_path_is_a_desync():
    result = decide(done(), Outcome("failed", None, "crc-mismatch", "CRC differs"))
    assert result.verdict == verdicts.DESYNC and "crc-mismatch" in result.detail


@pytest.mark.parametrize("status", ["error", "timeout", "worker-lost", "not-run"])
def test_outages_are_their_own_verdicts_on_either_side(status):
    assert decide(Outcome(status), None).verdict == status
    assert decide(done(), Outcome(status)).verdict == status


def test_unfinished_work_is_not_run_never_a_pass():
    assert decide(done(), None).verdict == verdicts.NOT_RUN
    assert decide(done(), Outcome("pending")).verdict == verdicts.NOT_RUN
    assert verdicts.NOT_RUN not in verdicts.PASSING


def test_a_missing_hash_is_an_error():
    hashes = dict(HASHES)
    del hashes["y_hat"]
    assert decide(done(), Outcome("done", hashes)).verdict == verdicts.ERROR


def test_recon_difference_measures_max_error_and_psnr():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    assert verdicts.recon_difference(a, b) == (0, None)
    b[0, 0, 0] = 3
    max_abs, psnr = verdicts.recon_difference(a, b)
    assert max_abs == 3
    assert psnr == pytest.approx(10 * np.log10(255**2 / (9 / 48)))


def test_nondeterminism_names_the_disagreeing_stages():
    assert verdicts.nondeterminism([done(), done()]) == ""
    assert verdicts.nondeterminism([done()]) == ""
    note = verdicts.nondeterminism([done(), done(recon="0" * 64)])
    assert "recon" in note and "y_hat" not in note
    assert "bitstream" in verdicts.nondeterminism([done(), done()], ["x", "y"])
    assert verdicts.nondeterminism([done(), Outcome("timeout")]) == ""


def test_first_mismatch_gives_the_latent_coordinate_in_coding_order():
    encoder = np.zeros((1, 4, 3, 5), np.int32)
    decoder = encoder.copy()
    assert first_mismatch(encoder, decoder) is None
    decoder[0, 2, 1, 4] = 7
    decoder[0, 3, 0, 0] = 9
    found = first_mismatch(encoder, decoder)
    assert (found.channel, found.y, found.x) == (2, 1, 4)
    assert (found.encoder_level, found.decoder_level) == (0, 7)
    assert found.flat_index == 2 * 15 + 1 * 5 + 4


def test_index_maps_are_read_in_every_json_shape():
    levels = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    as_data = {
        "shape": [2, 3, 4],
        "dtype": "int32",
        "byteorder": "little",
        "data": base64.b64encode(levels.astype("<i4").tobytes()).decode(),
    }
    as_values = {"shape": [2, 3, 4], "values": levels.reshape(-1).tolist()}
    for encoded in (as_data, as_values, levels.tolist()):
        assert np.array_equal(decode_array(encoded), levels)
    for bad in ({"shape": [5]}, {"data": "!!"}, 3, {"shape": [7], "values": [1, 2]}):
        with pytest.raises(IndexMapError):
            decode_array(bad)
    with pytest.raises(IndexMapError):
        first_mismatch(levels, levels[:1])


def test_a_hyperprior_decoder_that_drops_its_hyper_stages_is_an_error_not_a_factorized_pass():
    factorized = {stage: HASHES[stage] for stage in FACTORIZED_STAGES}
    assert (
        decide(Outcome("done", factorized), Outcome("done", dict(factorized))).verdict == verdicts.BIT_EXACT
    )
    hyperprior = package_stages({"architecture": {"n": 32, "m": 48}})
    dropped = decide(done(), Outcome("done", dict(factorized)), stages=hyperprior)
    assert (dropped.verdict, dropped.first_stage) == (verdicts.ERROR, "z_hat")
    lowcx = package_stages({"architecture": {"family": "lowcomplexity", "n": 32, "m": 48}})
    assert (
        decide(Outcome("done", factorized), Outcome("done", factorized), stages=lowcx).verdict == "bit-exact"
    )


def test_the_broken_line_names_a_lowcomplexity_codec_by_its_label_not_its_precision():
    def cell(codec: str, precision: str, name: str, verdict: str) -> dict:
        return {"codec": codec, "precision": precision, "codec_name": name, "encoder": "cpu"} | {
            "decoder": "arm",
            "verdict": verdict,
        }

    cells = [
        cell("a", "float", "float-aaaa", verdicts.DESYNC),
        cell("b", "int16-full", "lowcomplexity-int16-full-bbbb", verdicts.BIT_EXACT),
    ]
    line = verdicts.broken_line(cells)
    assert line == "float: 1 of 1 cross-device decodes broke; lowcomplexity-int16-full-bbbb: 0"
