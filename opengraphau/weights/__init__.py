"""The official OpenGraphAU models: their table, the cache that fetches and checks them, and the
choice of the checkpoint a run uses."""

from .cache import (
    ENV_HOME,
    ENV_OFFLINE,
    CachedModel,
    ModelCache,
    cache_dir,
    offline_from_env,
    sha256_of,
)
from .fetch import ENV_MIRROR, DownloadError
from .folder import CHECKPOINT_DIR, CHECKPOINT_SUFFIXES, CheckpointNotFound, find_checkpoint
from .official import (
    DEFAULT_MODEL,
    OFFICIAL_CHECKPOINTS,
    OfficialCheckpoint,
    model_names,
    official_by_name,
)
from .resolve import Weights, choose_weights, default_model

__all__ = [
    "CHECKPOINT_DIR",
    "CHECKPOINT_SUFFIXES",
    "DEFAULT_MODEL",
    "ENV_HOME",
    "ENV_MIRROR",
    "ENV_OFFLINE",
    "OFFICIAL_CHECKPOINTS",
    "CachedModel",
    "CheckpointNotFound",
    "DownloadError",
    "ModelCache",
    "OfficialCheckpoint",
    "Weights",
    "cache_dir",
    "choose_weights",
    "default_model",
    "find_checkpoint",
    "model_names",
    "offline_from_env",
    "official_by_name",
    "sha256_of",
]
