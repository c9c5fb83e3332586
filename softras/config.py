"""OmegaConf resolvers used by the configs in configs/ (no Hydra needed)."""

from __future__ import annotations

from omegaconf import OmegaConf

from .paths import config_dir, data_dir


def register_resolvers() -> None:
    """``${softras.data:}`` is the bundled data folder, ``${softras.configs:}`` the configs'."""
    if not OmegaConf.has_resolver("softras.data"):
        OmegaConf.register_new_resolver("softras.data", lambda: str(data_dir()))
    if not OmegaConf.has_resolver("softras.configs"):
        OmegaConf.register_new_resolver("softras.configs", lambda: str(config_dir()))


def compose(task: str, overrides: list[str] | None = None):
    """The composed config of ``task`` (as the command would build it), for scripts and tests."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_resolvers()
    with initialize_config_dir(version_base=None, config_dir=str(config_dir()), job_name=task):
        return hydra_compose(config_name=task, overrides=list(overrides or []), return_hydra_config=False)
