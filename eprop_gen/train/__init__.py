"""Training runs as a user does them: a TOML configuration, the tasks, the trainer (`eprop-gen train`,
`eprop-gen evaluate`), metrics, checkpoints and plots."""
from .config import Config, ConfigError, load_config
from .trainer import RunFolderError, RunResult, build, evaluate, train

__all__ = ["Config", "ConfigError", "load_config", "RunFolderError", "RunResult", "build", "evaluate", "train"]
