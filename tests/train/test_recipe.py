"""Recipe validation: defaults, shipped recipes, unknown keys with suggestions, and --set overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.errors import ConfigError
from ragtune.llm.bundled import BUNDLED_SMOLLM2
from ragtune.train.recipe import Recipe, RecipeError, load_recipe, recipe_fields

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.unit
class TestDefaults:
    def test_survey_defaults(self) -> None:
        recipe = Recipe()
        assert recipe.model.name == BUNDLED_SMOLLM2
        assert (recipe.lora.r, recipe.lora.alpha, recipe.lora.dropout) == (16, 32, 0.05)
        assert recipe.lora.target_modules == [
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
        ]
        assert recipe.train.lr_scheduler == "cosine"
        assert recipe.train.warmup_ratio == 0.03
        assert recipe.train.learning_rate == 2e-4
        assert recipe.train.max_grad_norm == 1.0
        assert recipe.data.eval_split == 0.1
        assert recipe.train.early_stopping_patience > 0
        assert recipe.train.save_total_limit == 3

    def test_every_field_is_documented(self) -> None:
        for section in Recipe.model_fields.values():
            sub = section.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                for name, info in sub.model_fields.items():
                    assert info.description, f"{sub.__name__}.{name} has no description"

    @pytest.mark.parametrize(
        ("name", "method", "finetune"),
        [("sft-lora", "sft", "lora"), ("sft-dora", "sft", "dora"), ("sft-qlora", "sft", "qlora"),
         ("sft-full", "sft", "full"), ("dpo", "dpo", "lora"), ("kto", "kto", "lora"), ("orpo", "orpo", "lora")],
    )
    def test_shipped_recipes_load(self, name: str, method: str, finetune: str) -> None:
        recipe = load_recipe(RECIPES / f"{name}.toml", method=method)
        assert recipe.method == method
        assert recipe.model.finetune == finetune
        assert recipe.model.name == BUNDLED_SMOLLM2
        # Relative to the recipe file, so the recipe runs from any directory.
        assert Path(recipe.data.path).is_absolute() and Path(recipe.data.path).is_file()


@pytest.mark.unit
class TestPaths:
    def test_paths_in_a_recipe_are_relative_to_its_file_and_set_paths_to_the_cwd(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from ragtune.train.embedder import load_embedder_recipe
        from ragtune.train.reranker import load_reranker_recipe

        folder = tmp_path / "project" / "recipes"
        folder.mkdir(parents=True)
        (folder / "sft.toml").write_text('[data]\npath = "data/train.jsonl"\neval_path = "/abs/eval.jsonl"\n'
                                         '[output]\ndir = "runs/mine"\n')
        (folder / "emb.toml").write_text('[data]\ntriplets = ["t1.jsonl", "../t2.jsonl"]\n')
        (folder / "rr.toml").write_text('[data]\nkb = "../kb"\nbeir = "beir/tiny"\n')
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        recipe = load_recipe(folder / "sft.toml", ["data.eval_path=held.jsonl"])
        assert recipe.data.path == str(folder / "data" / "train.jsonl")
        assert recipe.data.eval_path == "held.jsonl", "a --set path stays relative to the working directory"
        assert recipe.output.dir == "runs/mine", "outputs go under the working directory"
        assert load_recipe(folder / "sft.toml").data.eval_path == "/abs/eval.jsonl"
        assert load_embedder_recipe(folder / "emb.toml").data.triplets == [
            str(folder / "t1.jsonl"), str(folder / ".." / "t2.jsonl")]
        reranker = load_reranker_recipe(folder / "rr.toml")
        assert (reranker.data.kb, reranker.data.beir) == (str(folder / ".." / "kb"), str(folder / "beir" / "tiny"))
        assert load_recipe(None).data.path == ""


@pytest.mark.unit
class TestErrors:
    def test_unknown_key_names_the_closest(self, tmp_path: Path) -> None:
        path = tmp_path / "r.toml"
        path.write_text("[lora]\nrank = 8\n")
        with pytest.raises(RecipeError, match=r"unknown key 'lora.rank' — did you mean 'lora.r'"):
            load_recipe(path)

    def test_unknown_section(self, tmp_path: Path) -> None:
        path = tmp_path / "r.toml"
        path.write_text("[trian]\nepochs = 1\n")
        with pytest.raises(RecipeError, match=r"'trian' — did you mean 'train'"):
            load_recipe(path)

    def test_bad_value_names_the_field(self, tmp_path: Path) -> None:
        path = tmp_path / "r.toml"
        path.write_text("[model]\nfinetune = 'lora2'\n")
        with pytest.raises(RecipeError, match=r"model.finetune"):
            load_recipe(path)

    def test_errors_are_config_errors(self) -> None:
        assert issubclass(RecipeError, ConfigError)

    def test_missing_file_and_bad_toml(self, tmp_path: Path) -> None:
        with pytest.raises(RecipeError, match="no such file"):
            load_recipe(tmp_path / "none.toml")
        bad = tmp_path / "bad.toml"
        bad.write_text("[model\n")
        with pytest.raises(RecipeError, match="not valid TOML"):
            load_recipe(bad)

    def test_method_mismatch(self) -> None:
        with pytest.raises(RecipeError, match="is for 'dpo' but was run with 'train sft'"):
            load_recipe(RECIPES / "dpo.toml", method="sft")


@pytest.mark.unit
class TestOverrides:
    def test_typed_values(self) -> None:
        recipe = load_recipe(
            RECIPES / "sft-lora.toml",
            ["lora.r=32", "data.path=train.jsonl", "train.learning_rate=1e-4", "data.packing=true",
             'lora.target_modules=["q_proj"]'],
        )
        assert recipe.lora.r == 32
        assert recipe.data.path == "train.jsonl"
        assert recipe.train.learning_rate == 1e-4
        assert recipe.data.packing is True
        assert recipe.lora.target_modules == ["q_proj"]

    def test_wrong_type_is_an_error(self) -> None:
        with pytest.raises(RecipeError, match=r"lora.r: .*'abc'"):
            load_recipe(None, ["lora.r=abc"])

    def test_unknown_override_key(self) -> None:
        with pytest.raises(RecipeError, match=r"unknown key 'train.lr' — did you mean"):
            load_recipe(None, ["train.lr=0.1"])

    def test_malformed_override(self) -> None:
        with pytest.raises(RecipeError, match="section.field=value"):
            load_recipe(None, ["lora.r"])

    def test_field_list(self) -> None:
        assert "lora.r" in recipe_fields() and "method" in recipe_fields()
