"""Config composition for the command, scripts and tests: the OmegaConf resolvers of configs/
and ``compose(task, overrides)``, which builds a config as the command would."""

from __future__ import annotations

from omegaconf import OmegaConf

from .paths import config_dir, data_dir


def register_resolvers() -> None:
    """``${softras.data:}`` is the bundled data folder, ``${softras.configs:}`` the configs'."""
    if not OmegaConf.has_resolver("softras.data"):
        OmegaConf.register_new_resolver("softras.data", lambda: str(data_dir()))
    if not OmegaConf.has_resolver("softras.configs"):
        OmegaConf.register_new_resolver("softras.configs", lambda: str(config_dir()))


def register_schema(spec) -> None:
    """Registers a task's config dataclass as ``<name>_schema`` (its YAML lists it first)."""
    if spec.schema is not None:
        from .engine.schema import register

        register(spec.name, spec.schema)


def compose(task: str, overrides: list[str] | None = None):
    """The composed config of ``task`` (as the command would build it), for scripts and tests."""
    import importlib

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from .cli import SUBCOMMANDS

    register_resolvers()
    if task in SUBCOMMANDS:
        register_schema(importlib.import_module(SUBCOMMANDS[task][0]).TASK)
    with initialize_config_dir(version_base=None, config_dir=str(config_dir()), job_name=task):
        return hydra_compose(config_name=task, overrides=list(overrides or []), return_hydra_config=False)
