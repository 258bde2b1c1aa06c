"""Diagnosis: flags with reasons and advice, per-socket history, and their config."""

from bufmon.diagnosis.config import Config, ConfigError, load_config
from bufmon.diagnosis.engine import Diagnoser
from bufmon.diagnosis.history import History

__all__ = ["Config", "ConfigError", "Diagnoser", "History", "load_config"]
