"""The flywheel: feedback → redacted, de-duplicated, leakage-checked datasets → stage trainers → evaluation on a
frozen eval set → gate → atomic promotion or rollback, every decision logged."""

from ragtune.loop.gate import Verdict, decide
from ragtune.loop.hygiene import LeakageGuard, clean_rows, normalise_question
from ragtune.loop.recipe import STAGES, LoopRecipe, load_loop_recipe
from ragtune.loop.runner import init_loop, loop_history, loop_status, prune, rollback, run_loop

__all__ = [
    "STAGES",
    "LeakageGuard",
    "LoopRecipe",
    "Verdict",
    "clean_rows",
    "decide",
    "init_loop",
    "load_loop_recipe",
    "loop_history",
    "loop_status",
    "normalise_question",
    "prune",
    "rollback",
    "run_loop",
]
