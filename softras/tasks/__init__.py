"""Experiments, one module per subcommand of the `softras` command.

Each module declares ``TASK = TaskSpec(name, setup, schema, primary_metric, ...)``: ``setup``
reads a plain config object (an OmegaConf DictConfig typed by ``schema``) and builds an
``Experiment`` whose steps the engine runs. Tasks never import Hydra, and a task imports
nothing from another task.
"""
