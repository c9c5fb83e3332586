"""Experiments, one module per subcommand of the `softras` command: ``run(cfg) -> metrics``.

Tasks take a plain config object (an OmegaConf DictConfig or anything with the same
attribute access) and never import Hydra.
"""
