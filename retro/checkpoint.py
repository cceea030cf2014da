"""Orbax checkpoints of a run: parameters, optimiser state and the step, plus loading a trained model.

Layout of a run folder:
    model.yaml            the resolved ModelConfig
    config.yaml           the resolved TrainConfig
    checkpoints/<step>/   orbax: params (pure dict), opt_state, meta {step}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
import yaml
from flax import nnx

from retro.model import Retro
from retro.model_config import ModelConfig
from util.configs import config_from_dict


def manager(run_dir: str | os.PathLike, keep: int = 2) -> ocp.CheckpointManager:
    """An orbax CheckpointManager over run_dir/checkpoints keeping the last `keep` steps."""
    path = Path(run_dir).resolve() / "checkpoints"
    return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))


def save(mngr: ocp.CheckpointManager, step: int, params: dict, opt_state: Any) -> None:
    """Save params (pure dict), optimiser state and step; waits so the files are complete on return."""
    mngr.save(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            opt_state=ocp.args.StandardSave(opt_state),
            meta=ocp.args.JsonSave({"step": int(step)}),
        ),
    )
    mngr.wait_until_finished()


def restore(
    mngr: ocp.CheckpointManager, params_like: dict, opt_state_like: Any, step: int | None = None
) -> tuple[int, dict, Any]:
    """Restore (step, params, opt_state) shaped like the given templates; latest step by default."""
    step = mngr.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"{mngr.directory}: no checkpoint to restore")
    spec = jax.tree.map(ocp.utils.to_shape_dtype_struct, (params_like, opt_state_like))
    out = mngr.restore(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardRestore(spec[0]),
            opt_state=ocp.args.StandardRestore(spec[1]),
            meta=ocp.args.JsonRestore(),
        ),
    )
    return int(out["meta"]["step"]), out["params"], out["opt_state"]


def restore_params(run_dir: str | os.PathLike, step: int | None = None) -> tuple[int, dict]:
    """Only the parameters (a pure nested dict of arrays) of a run's latest (or given) checkpoint."""
    mngr = manager(run_dir)
    step = mngr.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"{Path(run_dir) / 'checkpoints'}: no checkpoint found")
    out = mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore()))
    return step, out["params"]


def merge_params(model: nnx.Module, params: dict, strict: bool = True) -> list[str]:
    """Copy a pure param dict into `model`. strict=False copies only the keys both have (RETROfit:
    a decoder trained without CCA into a RETRO model) and returns the model's params left untouched."""
    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    missing: list[str] = []

    def copy(dst: dict, src: dict, prefix: str) -> None:
        for key in dst:
            name = f"{prefix}{key}"
            if key not in src and str(key) not in src:
                if strict:
                    raise ValueError(f"checkpoint has no parameter {name}")
                missing.append(name)
                continue
            val = src[key] if key in src else src[str(key)]
            if isinstance(dst[key], dict):
                copy(dst[key], val, name + ".")
            else:
                if tuple(val.shape) != tuple(dst[key].shape):
                    raise ValueError(
                        f"parameter {name}: checkpoint shape {val.shape} != model {dst[key].shape}"
                    )
                dst[key] = val

    copy(pure, params, "")
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    return missing


def load_model_config(run_dir: str | os.PathLike) -> ModelConfig:
    """The ModelConfig a run was trained with (run_dir/model.yaml)."""
    path = Path(run_dir) / "model.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a training run folder (no model.yaml)")
    return config_from_dict(ModelConfig, yaml.safe_load(path.read_text()), source=str(path)).validate()


def load_model(run_dir: str | os.PathLike, step: int | None = None) -> tuple[Retro, int]:
    """Build the model of a run and load its latest (or given) checkpoint -> (model, step)."""
    cfg = load_model_config(run_dir)
    step, params = restore_params(run_dir, step)
    model = Retro(cfg, rngs=nnx.Rngs(0))
    merge_params(model, params, strict=True)
    return model, step
