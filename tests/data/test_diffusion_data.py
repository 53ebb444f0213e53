"""Prompt CSVs (I2P / ESD layouts), generated prompt grids, concept splits and forget images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from erasus.data.diffusion import (artist_prompts, i2p_prompts, load_forget_images, load_prompt_csv,
                                   split_by_concept, unlearncanvas_prompts)
from erasus.errors import ErasusTypeError, InvalidInputError

I2P = (',prompt,categories,hard,inappropriate_percentage,evaluation_seed,evaluation_guidance\n'
       '0,"weird portrait, vivid colors","violence, self-harm",1,50.0,4261553411,13\n'
       '1,"sketch, sad, alone","hate, self-harm",0,20.0,4055779965,7\n'
       '2,a calm lake at dawn,sexual,1,60.0,612304884,7.5\n')
ARTISTS = (",case_number,prompt,evaluation_seed,artist\n"
           "0,0,A self-portrait in the style of Van Gogh,2407,Van Gogh\n"
           '1,1,"A still life, inspired by Picasso",3208,Pablo Picasso\n')


def test_i2p_csv_reads_columns_and_filters_by_category_and_hardness(tmp_path):
    f = tmp_path / "i2p.csv"
    f.write_text(I2P)
    ps = load_prompt_csv(f)
    assert ps.prompts == ("weird portrait, vivid colors", "sketch, sad, alone", "a calm lake at dawn")
    assert ps.concepts == (("violence", "self-harm"), ("hate", "self-harm"), ("sexual",))
    assert ps.seeds == (4261553411, 4055779965, 612304884) and ps.guidance == (13.0, 7.0, 7.5)
    assert i2p_prompts(f, categories="self-harm").prompts == ps.prompts[:2]
    assert i2p_prompts(f, categories=["Sexual"], hard_only=True).prompts == ("a calm lake at dawn",)
    assert i2p_prompts(f, hard_only=True).prompts == (ps.prompts[0], ps.prompts[2])


def test_artist_csv_and_split_by_concept(tmp_path):
    f = tmp_path / "art.csv"
    f.write_text(ARTISTS)
    ps = load_prompt_csv(f)
    assert ps.concepts == (("Van Gogh",), ("Pablo Picasso",)) and ps.guidance is None
    forget, retain = split_by_concept(ps, "van gogh")
    assert forget.prompts == ("A self-portrait in the style of Van Gogh",) and forget.seeds == (2407,)
    assert retain.prompts == ("A still life, inspired by Picasso",)
    with pytest.raises(InvalidInputError, match="no prompt is tagged"):
        split_by_concept(ps, "monet")
    with pytest.raises(InvalidInputError, match="nothing is left to retain"):
        split_by_concept(ps, ["van gogh", "pablo picasso"])


def test_generated_prompt_sets():
    grid = unlearncanvas_prompts(["dog", "tree"], ["Van Gogh", "Ukiyoe"])
    assert grid.prompts == ("An dog image in Van Gogh style.", "An tree image in Van Gogh style.",
                            "An dog image in Ukiyoe style.", "An tree image in Ukiyoe style.")
    assert grid.with_concept("ukiyoe").concepts == (("dog", "Ukiyoe"), ("tree", "Ukiyoe"))
    art = artist_prompts(["Monet"], templates=["art by {}", "{} painting"])
    assert art.prompts == ("art by Monet", "Monet painting") and art.concepts == (("Monet",), ("Monet",))
    with pytest.raises(InvalidInputError, match="slot for the artist"):
        artist_prompts(["Monet"], templates=["a painting"])
    with pytest.raises(InvalidInputError, match=r"\{object\}"):
        unlearncanvas_prompts(["dog"], ["x"], template="a {style} thing")


def test_prompt_csv_errors_name_the_problem(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_prompt_csv(tmp_path / "missing.csv")
    f = tmp_path / "bad.csv"
    f.write_text("text,categories\nhello,x\n")
    with pytest.raises(InvalidInputError, match="no 'prompt' column"):
        load_prompt_csv(f)
    assert load_prompt_csv(f, prompt_column="text").prompts == ("hello",)
    with pytest.raises(InvalidInputError, match="no 'artist' column"):
        load_prompt_csv(f, prompt_column="text", concept_column="artist")
    f.write_text("prompt,evaluation_seed\nhello,abc\n")
    with pytest.raises(InvalidInputError, match="line 2: 'evaluation_seed' is 'abc'"):
        load_prompt_csv(f)
    f.write_text("prompt,hard\nhello,1\n,0\n")
    with pytest.raises(InvalidInputError, match="line 3: empty 'prompt'"):
        load_prompt_csv(f)
    f.write_text("prompt,categories\nhello,x\n")
    with pytest.raises(InvalidInputError, match="no 'hard' column"):
        i2p_prompts(f, hard_only=True)


def test_forget_images_from_folder_and_list(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(2)]
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    x = load_forget_images(tmp_path)
    assert x.shape == (2, 3, 6, 5) and x.dtype == torch.float32
    torch.testing.assert_close(x[1], torch.from_numpy(arrays[1].transpose(2, 0, 1) / 255.0).float())
    gray = load_forget_images([tmp_path / "0.png"], mode="L", size=4)
    assert gray.shape == (1, 1, 4, 4)
    Image.fromarray(arrays[0][:4]).save(tmp_path / "2.png")
    with pytest.raises(InvalidInputError, match="different sizes"):
        load_forget_images(tmp_path)
    with pytest.raises(InvalidInputError, match="do not exist"):
        load_forget_images([tmp_path / "0.png", tmp_path / "nope.png"])
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_forget_images(tmp_path / "nowhere")
    (tmp_path / "3.png").write_text("broken")
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_forget_images([tmp_path / "3.png"])
    with pytest.raises(ErasusTypeError):
        load_forget_images(42)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInputError, match="no .png"):
        load_forget_images(empty)
