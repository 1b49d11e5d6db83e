"""A recipe file with a value of the wrong type or range is refused when it is read, before any work, in
one line naming the file, the table and key, and what it expects; never as a Python error mid-conversion."""

from __future__ import annotations

import pytest

from ocrgraft.converter.cli import main
from ocrgraft.converter.recipes import list_recipes


@pytest.mark.parametrize(
    "text, message",
    [
        ('[inputs.x]\nmin = "abc"\n', "[inputs.x] min must be a list of positive integers, got 'abc'"),
        (
            "[inputs.x]\nmin = [1, 3, 8, 16]\nmax = [1, 3, 8]\n",
            "[inputs.x] min, opt and max must have the same rank",
        ),
        (
            "[inputs.x]\nmin = [2, 3, 8, 16]\nmax = [1, 3, 8, 16]\n",
            "[inputs] input 'x' dim 0: min 2 is larger than max 1",
        ),
        ("[inputs.x]\nmn = [1, 3, 8, 16]\n", "[inputs.x] unknown key 'mn' (known: min, opt, max)"),
        ("[inputs]\nx = 3\n", "[inputs] x must be a table of min, opt, max, got 3"),
        ("inputs = 5\n", "inputs must be a table ([inputs]), got 5"),
        ("[passes]\nall = 7\n", "[passes] all must be a list of pass names, got 7"),
        ('[verify]\natol = "big"\n', "[verify] atol must be a finite number >= 0, got 'big'"),
        ("[verify]\nrtol = -1.0\n", "[verify] rtol must be a finite number >= 0, got -1.0"),
        ("[verify]\natol = 1e-3\nfoo = 1\n", "[verify] unknown key 'foo' (known: atol, rtol)"),
        ('[preprocess]\nmean = "x"\n', "[preprocess] mean must be a number or a list of numbers, got 'x'"),
        ("[preprocess]\nstd = [0]\n", "[preprocess] std must be a list of non-zero numbers, got [0]"),
        ('[preprocess]\ncolor = "cmyk"\n', "[preprocess] color must be one of rgb, bgr, gray, got 'cmyk'"),
        ("[model]\nfrontend = 3\n", "[model] frontend must be one of onnx, torch, paddle, got 3"),
        ('[decoder]\nkind = "nosuch"\n', "[decoder] kind must be one of ctc, probability-map, got 'nosuch'"),
        (
            '[decoder]\nlayout = "NXC"\n',
            "[decoder] layout must be one of NTC, NCT, TNC, TCN, CNT, CTN, got 'NXC'",
        ),
        ('[decoder]\nblank = "0"\n', "[decoder] blank must be an integer (-1: the last class), got '0'"),
        ('[decodr]\nkind = "ctc"\n', "unknown table(s) decodr (known: model, preprocess, decoder, verify,"),
        ("[verify\n", "not valid TOML"),
    ],
)
def test_a_bad_recipe_is_one_clear_error_before_any_work(tmp_path, capsys, dynamic_model_file, text, message):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    rc = main(
        [
            "convert",
            "--onnx",
            str(dynamic_model_file),
            "--recipe",
            str(recipe),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith(f"ocrgraft: error: recipe {recipe}: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_the_zoo_recipes_pass_the_check():
    assert len(list_recipes()) >= 12
